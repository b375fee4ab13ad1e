/*
 * The command table, dispatch, and every form of help: `vmctl help`,
 * `vmctl help COMMAND`, `vmctl COMMAND --help` and the reference section of
 * docs/cli.md (`vmctl help --markdown`) are all printed from the cmd_entry
 * structs, so they say the same thing.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define HELP_WIDTH 79
#define HELP_OPTION_COLUMN 28

const struct cmd_entry *const cmd_table[] = {
	&cmd_launch_entry,
	&cmd_list_entry,
	&cmd_info_entry,
	&cmd_start_entry,
	&cmd_stop_entry,
	&cmd_restart_entry,
	&cmd_suspend_entry,
	&cmd_delete_entry,
	&cmd_recover_entry,
	&cmd_purge_entry,
	&cmd_exec_entry,
	&cmd_shell_entry,
	&cmd_transfer_entry,
	&cmd_mount_entry,
	&cmd_umount_entry,
	&cmd_snapshot_entry,
	&cmd_restore_entry,
	&cmd_clone_entry,
	&cmd_find_entry,
	&cmd_networks_entry,
	&cmd_drivers_entry,
	&cmd_get_entry,
	&cmd_set_entry,
	&cmd_alias_entry,
	&cmd_aliases_entry,
	&cmd_unalias_entry,
	&cmd_prefer_entry,
	&cmd_run_alias_entry,
	&cmd_wait_ready_entry,
	&cmd_authenticate_entry,
	&cmd_version_entry,
	&cmd_help_entry,
	NULL,
};

const struct cmd_entry *cmd_find(const char *name)
{
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		if (strcmp(e->name, name) == 0 || (e->alias != NULL && strcmp(e->alias, name) == 0))
			return e;
	}
	return NULL;
}

int cmd_error(int code, const char *fmt, ...)
{
	va_list ap;

	progress_end();
	fputs("vmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int cmd_usage_error(const struct cmd_entry *e, const char *fmt, ...)
{
	va_list ap;

	fputs("vmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fprintf(stderr, "Usage: vmctl %s %s\n", e->name, e->usage);
	fprintf(stderr, "Run 'vmctl help %s' for more.\n", e->name);
	return EXIT_USAGE;
}

/* ---- terminal help ---- */

/* Print text wrapped at HELP_WIDTH, every line starting at column indent
 * (the first at column first, which the caller has already reached).
 * Paragraphs are separated by "\n\n"; lines starting with a space are
 * examples, printed as they are. */
static void help_wrap(FILE *out, const char *text, int indent, int first)
{
	int col = first;
	const char *p = text;
	bool line_start = true;

	while (*p != '\0') {
		if (*p == '\n') {
			fputc('\n', out);
			col = 0;
			p++;
			line_start = true;
			if (*p == '\n') {
				fputc('\n', out);
				p++;
			}
			continue;
		}
		if (line_start && col == 0) {
			fprintf(out, "%*s", indent, "");
			col = indent;
		}
		if (line_start && *p == ' ') {
			const char *nl = strchrnul(p, '\n');

			fprintf(out, "%.*s", (int)(nl - p), p);
			col += (int)(nl - p);
			p = nl;
			continue;
		}
		line_start = false;
		while (*p == ' ')
			p++;
		{
			size_t len = strcspn(p, " \n");

			if (col > indent && col + 1 + (int)len > HELP_WIDTH) {
				fprintf(out, "\n%*s", indent, "");
				col = indent;
			} else if (col > indent) {
				fputc(' ', out);
				col++;
			}
			fprintf(out, "%.*s", (int)len, p);
			col += (int)len;
			p += len;
		}
	}
	if (col > 0)
		fputc('\n', out);
}

static void help_option_label(char *buf, size_t len, const struct cmd_option *o)
{
	int n = 0;

	if (o->short_name != 0)
		n = snprintf(buf, len, "-%c, ", o->short_name);
	snprintf(buf + n, len - (size_t)n, "--%s%s%s", o->name, o->arg != NULL ? " " : "",
		 o->arg != NULL ? o->arg : "");
}

void cmd_print_help(FILE *out, const struct cmd_entry *e)
{
	char label[128];

	fprintf(out, "Usage: vmctl %s %s\n", e->name, e->usage);
	if (e->alias != NULL)
		fprintf(out, "Alias: vmctl %s\n", e->alias);
	fputc('\n', out);
	help_wrap(out, e->summary, 0, 0);
	if (e->help != NULL && e->help[0] != '\0') {
		fputc('\n', out);
		help_wrap(out, e->help, 0, 0);
	}
	fprintf(out, "\nOptions:\n");
	fprintf(out, "  %-*s", HELP_OPTION_COLUMN - 2, "-h, --help");
	help_wrap(out, "Show this help.", HELP_OPTION_COLUMN, HELP_OPTION_COLUMN);
	for (size_t i = 0; e->options != NULL && e->options[i].name != NULL; i++) {
		const struct cmd_option *o = &e->options[i];

		help_option_label(label, sizeof(label), o);
		if ((int)strlen(label) + 2 >= HELP_OPTION_COLUMN - 1) {
			fprintf(out, "  %s\n%*s", label, HELP_OPTION_COLUMN, "");
		} else {
			fprintf(out, "  %-*s", HELP_OPTION_COLUMN - 2, label);
		}
		help_wrap(out, o->help, HELP_OPTION_COLUMN, HELP_OPTION_COLUMN);
	}
	if (e->arguments != NULL && e->arguments[0].name != NULL) {
		fprintf(out, "\nArguments:\n");
		for (size_t i = 0; e->arguments[i].name != NULL; i++) {
			const struct cmd_argument *arg = &e->arguments[i];

			if ((int)strlen(arg->name) + 2 >= HELP_OPTION_COLUMN - 1)
				fprintf(out, "  %s\n%*s", arg->name, HELP_OPTION_COLUMN, "");
			else
				fprintf(out, "  %-*s", HELP_OPTION_COLUMN - 2, arg->name);
			help_wrap(out, arg->help, HELP_OPTION_COLUMN, HELP_OPTION_COLUMN);
		}
	}
}

void cmd_print_overview(FILE *out)
{
	fprintf(out, "Usage: vmctl COMMAND [options] [ARGUMENTS]\n\n"
		     "Create, run and manage cloud-style virtual machines.\n\n"
		     "Commands:\n");
	/* The summaries start one space after the longest name (at column 14 at least). */
	int width = 12;

	for (size_t i = 0; cmd_table[i] != NULL; i++)
		if (!(cmd_table[i]->flags & CMD_F_HIDDEN) && (int)strlen(cmd_table[i]->name) + 1 > width)
			width = (int)strlen(cmd_table[i]->name) + 1;
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		if (e->flags & CMD_F_HIDDEN)
			continue;
		fprintf(out, "  %-*s", width, e->name);
		help_wrap(out, e->summary, width + 2, width + 2);
	}
	fprintf(out, "\nRun 'vmctl help COMMAND' or 'vmctl COMMAND --help' for a command's "
		     "options.\n");
}

/* ---- markdown reference ---- */

/* Text for a markdown table cell: '|' escaped, lines joined. */
static void md_cell(FILE *out, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '|')
			fputs("\\|", out);
		else if (*p == '\n')
			fputc(' ', out);
		else
			fputc(*p, out);
	}
}

/* Help text is already markdown: paragraphs separated by blank lines, and
 * examples indented by four spaces after a blank line (a code block). */
static void md_text(FILE *out, const char *text)
{
	fprintf(out, "%s\n", text);
}

void cmd_print_markdown(FILE *out)
{
	char label[128];

	fprintf(out, "| command | what it does |\n|---|---|\n");
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		fprintf(out, "| [`%s`](#%s) | ", e->name, e->name);
		md_cell(out, e->summary);
		fprintf(out, " |\n");
	}
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		fprintf(out, "\n### %s\n\n```\nvmctl %s %s\n```\n\n", e->name, e->name, e->usage);
		fprintf(out, "%s\n", e->summary);
		if (e->help != NULL && e->help[0] != '\0') {
			fputc('\n', out);
			md_text(out, e->help);
		}
		if (e->alias != NULL)
			fprintf(out, "\nAlias: `vmctl %s`.\n", e->alias);
		if (e->arguments != NULL && e->arguments[0].name != NULL) {
			fprintf(out, "\n| argument | meaning |\n|---|---|\n");
			for (size_t k = 0; e->arguments[k].name != NULL; k++) {
				fprintf(out, "| `%s` | ", e->arguments[k].name);
				md_cell(out, e->arguments[k].help);
				fprintf(out, " |\n");
			}
		}
		fprintf(out, "\n| option | meaning |\n|---|---|\n");
		fprintf(out, "| `-h`, `--help` | Show this help. |\n");
		for (size_t k = 0; e->options != NULL && e->options[k].name != NULL; k++) {
			const struct cmd_option *o = &e->options[k];

			fputs("| ", out);
			if (o->short_name != 0)
				fprintf(out, "`-%c`, ", o->short_name);
			snprintf(label, sizeof(label), "--%s%s%s", o->name, o->arg != NULL ? " " : "",
				 o->arg != NULL ? o->arg : "");
			fputc('`', out);
			md_cell(out, label);
			fputs("` | ", out);
			md_cell(out, o->help);
			fprintf(out, " |\n");
		}
	}
}

/* ---- manual page ---- */

/* The environment variables vmctl reads (docs/cli.md, "Environment"). */
static const struct {
	const char *name, *help;
} man_environment[] = {
	{ "VMCTL_DATA", "The data folder (socket, settings, instances, images). Default: "
			"$XDG_DATA_HOME/vmctl, else ~/.local/share/vmctl." },
	{ "VMCTL_NO_AUTOSTART", "When set, vmctl does not start a broker that is not running; "
				"it fails with exit status 3 instead." },
	{ "VMCTL_HELPER_PATH", "Folders (separated by ':') searched for driver helpers before "
			       "the install's libexec/vmctl; read by the broker it starts." },
	{ "VMCTL_DEBUG", "When set, vmctl and the broker it starts log debug records." },
};

/* text as roff: backslashes and dashes escaped, a control character at a
 * line's start neutralised. */
static void man_text(FILE *out, const char *text, size_t len)
{
	bool line_start = true;

	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (line_start && (c == '.' || c == '\''))
			fputs("\\&", out);
		if (c == '\\')
			fputs("\\e", out);
		else if (c == '-')
			fputs("\\-", out);
		else
			fputc(c, out);
		line_start = c == '\n';
	}
}

static void man_str(FILE *out, const char *text)
{
	man_text(out, text, strlen(text));
}

/* Help text: paragraphs separated by blank lines become .PP, lines that
 * start with a space (examples) are kept as they are, indented. */
static void man_paragraphs(FILE *out, const char *text)
{
	bool in_example = false;
	const char *p = text;

	while (*p != '\0') {
		const char *nl = strchrnul(p, '\n');
		size_t len = (size_t)(nl - p);

		if (len == 0) {
			if (in_example)
				fputs(".fi\n.RE\n", out);
			in_example = false;
			fputs(".PP\n", out);
		} else if (*p == ' ') {
			size_t skip = strspn(p, " ");

			if (!in_example)
				fputs(".RS 4\n.nf\n", out);
			in_example = true;
			man_text(out, p + skip, len - skip);
			fputc('\n', out);
		} else {
			if (in_example)
				fputs(".fi\n.RE\n", out);
			in_example = false;
			man_text(out, p, len);
			fputc('\n', out);
		}
		p = *nl != '\0' ? nl + 1 : nl;
	}
	if (in_example)
		fputs(".fi\n.RE\n", out);
}

void cmd_print_man(FILE *out)
{
	fprintf(out, ".\\\" Generated by 'vmctl help --man' from vmctl's command table.\n"
		     ".TH VMCTL 1 \"\" \"vmctl %s\" \"User Commands\"\n.nh\n", VMCTL_VERSION);
	fputs(".SH NAME\nvmctl \\- create, run and manage cloud\\-style virtual machines\n"
	      ".SH SYNOPSIS\n.B vmctl\n.I COMMAND\n[options] [ARGUMENTS]\n"
	      ".br\n.B vmctl help\n[\\fICOMMAND\\fR]\n"
	      ".SH DESCRIPTION\n"
	      ".B vmctl\nlaunches and manages virtual machines (instances) through one "
	      "broker per user,\n.BR vmctld (8),\nwhich it starts when none is running. The "
	      "broker runs each hypervisor through a driver helper (see\n"
	      ".BR vmctl\\-helper (7)).\n"
	      "Every command below also takes\n.BR \\-h ,\n.BR \\-\\-help .\n"
	      ".SH COMMANDS\n", out);
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		fputs(".SS ", out);
		man_str(out, e->name);
		fputs("\n.B vmctl ", out);
		man_str(out, e->name);
		fputc('\n', out);
		man_str(out, e->usage);
		fputs("\n.PP\n", out);
		man_paragraphs(out, e->summary);
		if (e->help != NULL && e->help[0] != '\0') {
			fputs(".PP\n", out);
			man_paragraphs(out, e->help);
		}
		if (e->alias != NULL) {
			fputs(".PP\nAlias:\n.BR \"vmctl ", out);
			man_str(out, e->alias);
			fputs("\" .\n", out);
		}
		for (size_t k = 0; e->arguments != NULL && e->arguments[k].name != NULL; k++) {
			fputs(".TP\n.I ", out);
			man_str(out, e->arguments[k].name);
			fputc('\n', out);
			man_str(out, e->arguments[k].help);
			fputc('\n', out);
		}
		for (size_t k = 0; e->options != NULL && e->options[k].name != NULL; k++) {
			const struct cmd_option *o = &e->options[k];

			fputs(".TP\n\\fB", out);
			if (o->short_name != 0)
				fprintf(out, "\\-%c\\fR, \\fB", o->short_name);
			fputs("\\-\\-", out);
			man_str(out, o->name);
			fputs("\\fR", out);
			if (o->arg != NULL) {
				fputs(" \\fI", out);
				man_str(out, o->arg);
				fputs("\\fR", out);
			}
			fputc('\n', out);
			man_str(out, o->help);
			fputc('\n', out);
		}
	}
	fputs(".SH ENVIRONMENT\n", out);
	for (size_t i = 0; i < sizeof(man_environment) / sizeof(man_environment[0]); i++) {
		fprintf(out, ".TP\n.B %s\n", man_environment[i].name);
		man_str(out, man_environment[i].help);
		fputc('\n', out);
	}
	fputs(".SH EXIT STATUS\n"
	      ".TP\n.B 0\nSuccess.\n"
	      ".TP\n.B 1\nThe command failed.\n"
	      ".TP\n.B 2\nA bad command line or an invalid argument.\n"
	      ".TP\n.B 3\nThe broker could not be reached or started.\n"
	      ".TP\n.B 5\nA timeout passed (the instance is kept), or the broker did not "
	      "answer in time.\n"
	      ".PP\n.B vmctl exec\nexits with the command's own status.\n"
	      ".SH FILES\n"
	      ".TP\n.I $VMCTL_DATA/vmctld.sock\nThe broker's socket.\n"
	      ".TP\n.I $VMCTL_DATA/vmctld.log\nThe broker's log.\n"
	      ".SH SEE ALSO\n.BR vmctld (8),\n.BR vmctl\\-helper (7)\n", out);
}

/* ---- shared by the commands ---- */

void cmd_pack_names(msgpack_packer *pk, const struct cmd_args *a, bool all)
{
	proto_pack_str(pk, "names");
	msgpack_pack_array(pk, all ? 0 : (size_t)a->argc);
	for (int i = 0; !all && i < a->argc; i++)
		proto_pack_str(pk, a->argv[i]);
	proto_pack_kv_bool(pk, "all", all);
}

int cmd_wait_timeout(const struct cmd_args *a, unsigned def, double *seconds)
{
	char err[256];
	uint64_t v = def;

	if (args_get(a, "timeout") != NULL &&
	    args_parse_uint("--timeout", args_get(a, "timeout"), 1, 7 * 86400, &v, err,
			    sizeof(err)) < 0)
		return cmd_usage_error(a->entry, "%s", err);
	*seconds = (double)v;
	return EXIT_OK;
}

int cmd_names_request(struct cmd_args *a, const char *method, const char *timeout_opt,
		      uint64_t default_timeout)
{
	char err[256];
	bool all;
	uint64_t timeout = default_timeout;
	double wait = 0;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (args_names_or_all(a, &all, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (timeout_opt != NULL && args_get(a, timeout_opt) != NULL &&
	    args_parse_uint("--timeout", args_get(a, timeout_opt), 1, 86400, &timeout, err,
			    sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (timeout_opt != NULL)
		wait = (double)timeout + CLI_BACKSTOP;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, timeout_opt != NULL ? 3 : 2);
	cmd_pack_names(&pk, a, all);
	if (timeout_opt != NULL)
		proto_pack_kv_uint(&pk, "timeout", timeout);
	rc = cli_request(method, &sb, wait, &r);
	msgpack_sbuffer_destroy(&sb);
	cli_reply_free(&r);
	return rc;
}

/* ---- dispatch ---- */

int cmd_main(int argc, char **argv)
{
	const struct cmd_entry *e;
	struct cmd_args args;
	char err[512];
	double wait = 0;
	int rc;

	if (argc < 2) {
		cmd_print_overview(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		cmd_print_overview(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0)
		argv[1] = "version";
	e = cmd_find(argv[1]);
	if (e == NULL) {
		fprintf(stderr, "vmctl: unknown command '%s'\n", argv[1]);
		for (size_t i = 0; cmd_table[i] != NULL; i++) {
			if (args_close_enough(argv[1], cmd_table[i]->name)) {
				fprintf(stderr, "Did you mean 'vmctl %s'?\n", cmd_table[i]->name);
				break;
			}
		}
		fprintf(stderr, "Usage: vmctl COMMAND [options] [ARGUMENTS]\n");
		fprintf(stderr, "Run 'vmctl help' for the list of commands.\n");
		return EXIT_USAGE;
	}
	if (args_parse(e, argc - 2, argv + 2, &args, err, sizeof(err)) < 0)
		return cmd_usage_error(e, "%s", err);
	if (args.help) {
		cmd_print_help(stdout, e);
		rc = EXIT_OK;
	} else if (e->wait > 0 && (rc = cmd_wait_timeout(&args, e->wait, &wait)) != EXIT_OK) {
		/* a bad --timeout, already explained */
	} else {
		if (e->wait > 0)
			cli_set_wait(wait);
		rc = e->exec(e, &args);
	}
	args_free(&args);
	cli_disconnect();
	return rc;
}
