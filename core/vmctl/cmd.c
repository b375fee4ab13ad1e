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
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		if (e->flags & CMD_F_HIDDEN)
			continue;
		fprintf(out, "  %-12s", e->name);
		help_wrap(out, e->summary, 14, 14);
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
