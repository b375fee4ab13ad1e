/*
 * The readiness login's remote command and the reading of its output. One
 * login both proves SSH works and waits for cloud-init: a login costs
 * seconds on an emulated guest, so a second one would be paid by every
 * launch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "readiness.h"

#define READY_CI_MARK "vmctl-cloud-init:"

/* /run/cloud-init exists once cloud-init's generator ran in this boot; a
 * guest that has cloud-init installed but booted without it would make
 * `status --wait` wait forever. When cloud-init's own files already say it
 * is done (result.json, no stage running) and nothing in them but empty
 * "errors" lists mentions an error, the answer is the one `status --wait`
 * would give; anything else asks cloud-init itself. That check uses shell
 * builtins only (POSIX sh: a guest's login shell may be dash): on an
 * emulated guest each process costs tens of milliseconds and cloud-init's
 * Python start-up a quarter of a second. The exit status stays
 * cloud-init's, so a login shell that mangles the verdict line still
 * reports it. VMCTL_CLOUD_INIT_RUN is for the unit tests. */
const char ready_cloud_init_cmd[] =
	"echo " READY_UP_MARK "\n"
	"d=${VMCTL_CLOUD_INIT_RUN:-/run/cloud-init}\n"
	"if command -v cloud-init >/dev/null && [ -d \"$d\" ]; then\n"
	" s=\n"
	" if [ -f \"$d/result.json\" ] && [ -f \"$d/status.json\" ]; then\n"
	"  s=0 stage=\n"
	"  for f in \"$d/result.json\" \"$d/status.json\"; do\n"
	"   while IFS= read -r l || [ -n \"$l\" ]; do\n"
	"    case $l in *'\"stage\": null'*) stage=1 ;; esac\n"
	"    c=\n"
	"    while :; do\n"
	"     case $l in\n"
	"     *'\"errors\": []'*) c=$c${l%%'\"errors\": []'*}; l=${l#*'\"errors\": []'} ;;\n"
	"     *) c=$c$l; break ;;\n"
	"     esac\n"
	"    done\n"
	"    case $c in *[Ee][Rr][Rr][Oo][Rr]*) s= ;; esac\n"
	"   done <\"$f\"\n"
	"  done\n"
	"  [ -n \"$stage\" ] || s=\n"
	" fi\n"
	" if [ -z \"$s\" ]; then cloud-init status --wait >/dev/null; s=$?; fi\n"
	" echo \"" READY_CI_MARK " $s\"\n"
	" exit $s\n"
	"fi\n"
	"echo \"" READY_CI_MARK " none\"\n";

/* The start of a line of text that is exactly mark followed by a space or
 * the end of the line, or NULL. */
static const char *ready_find_line(const char *text, const char *mark)
{
	size_t n = strlen(mark);

	const char *p = text;

	while (p && *p) {
		if (strncmp(p, mark, n) == 0 &&
		    (p[n] == '\n' || p[n] == '\r' || p[n] == ' ' || p[n] == '\0'))
			return p;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

bool ready_output_up(const char *output)
{
	const char *line = output ? ready_find_line(output, READY_UP_MARK) : NULL;

	/* A partial read could end inside the mark: only a whole line counts. */
	return line && strchr(line, '\n');
}

enum ready_cloud_init ready_output_cloud_init(const char *output, int *status)
{
	const char *line = output ? ready_find_line(output, READY_CI_MARK) : NULL;
	const char *v;
	char *end;
	long code;

	*status = 0;
	if (!line || !strchr(line, '\n'))
		return READY_CI_UNKNOWN;
	v = line + strlen(READY_CI_MARK);
	while (*v == ' ')
		v++;
	if (strncmp(v, "none", 4) == 0 && (v[4] == '\n' || v[4] == '\r'))
		return READY_CI_ABSENT;
	code = strtol(v, &end, 10);
	if (end == v || (*end != '\n' && *end != '\r') || code < 0 || code > 255)
		return READY_CI_UNKNOWN;
	*status = (int)code;
	return READY_CI_DONE;
}
