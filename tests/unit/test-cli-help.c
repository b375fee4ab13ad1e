/* vmctl's command table and the help printed from it, including docs/cli.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "vmctl.h"

#define CLI_DOC VMCTL_SOURCE_DIR "/docs/cli.md"
#define DOC_BEGIN "<!-- BEGIN GENERATED: vmctl help --markdown -->\n\n"
#define DOC_END "\n<!-- END GENERATED -->"

static char *print_to_string(void (*fn)(FILE *, const struct cmd_entry *),
			     const struct cmd_entry *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	fn(f, e);
	fclose(f);
	return buf;
}

static void overview(FILE *f, const struct cmd_entry *e)
{
	cmd_print_overview(f);
}

static void markdown(FILE *f, const struct cmd_entry *e)
{
	cmd_print_markdown(f);
}

Test(cli_help, docs_match_the_generated_reference)
{
	char *doc = NULL, *generated = print_to_string(markdown, NULL);
	size_t len = 0;
	FILE *f = fopen(CLI_DOC, "r");
	char *begin, *end;

	cr_assert_not_null(f, "cannot open %s", CLI_DOC);
	cr_assert_eq(getdelim(&doc, &len, '\0', f) > 0, true);
	fclose(f);
	begin = strstr(doc, DOC_BEGIN);
	cr_assert_not_null(begin, "docs/cli.md lacks the generated-section marker");
	begin += strlen(DOC_BEGIN);
	end = strstr(begin, DOC_END);
	cr_assert_not_null(end, "docs/cli.md lacks the end marker");
	*end = '\0';
	cr_assert_str_eq(begin, generated,
			 "docs/cli.md is out of date: regenerate it with 'vmctl help --markdown'");
	free(doc);
	free(generated);
}

Test(cli_help, every_command_is_complete)
{
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		cr_assert_not_null(e->name);
		cr_assert_not_null(e->usage, "%s has no usage", e->name);
		cr_assert_not_null(e->summary, "%s has no summary", e->name);
		cr_assert_not_null(e->exec, "%s has no exec", e->name);
		cr_assert(e->max_args < 0 || e->max_args >= e->min_args, "%s", e->name);
	}
}

/* No request waits forever: every command that talks to the broker takes
 * --timeout, and those without a --timeout of their own have a wait. */
Test(cli_help, every_broker_command_has_a_timeout)
{
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];
		const struct cmd_option *timeout = NULL;

		if (strcmp(e->name, "help") == 0 || (e->flags & CMD_F_LOCAL))
			continue;
		for (size_t k = 0; e->options != NULL && e->options[k].name != NULL; k++)
			if (strcmp(e->options[k].name, "timeout") == 0)
				timeout = &e->options[k];
		cr_assert_not_null(timeout, "vmctl %s has no --timeout", e->name);
		if (strncmp(timeout->help, "Give up waiting for the broker", 30) == 0) {
			char def[32];

			cr_assert_gt(e->wait, 0, "vmctl %s: --timeout without a wait", e->name);
			snprintf(def, sizeof(def), "(default %u", e->wait);
			cr_assert(strstr(timeout->help, def) != NULL,
				  "vmctl %s: the help of --timeout does not say %s: %s", e->name, def,
				  timeout->help);
		}
	}
}

Test(cli_help, names_and_aliases_are_unique)
{
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		cr_assert_eq(cmd_find(e->name), e, "'%s' finds another command", e->name);
		if (e->alias != NULL)
			cr_assert_eq(cmd_find(e->alias), e, "'%s' finds another command", e->alias);
	}
	cr_assert_eq(cmd_find("ls"), cmd_find("list"));
	cr_assert_null(cmd_find("frobnicate"));
}

Test(cli_help, options_do_not_clash)
{
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		for (size_t k = 0; e->options != NULL && e->options[k].name != NULL; k++) {
			const struct cmd_option *o = &e->options[k];

			cr_assert_str_neq(o->name, "help", "%s redefines --help", e->name);
			cr_assert_neq(o->short_name, 'h', "%s redefines -h", e->name);
			cr_assert_not_null(o->help, "%s --%s has no help", e->name, o->name);
			for (size_t m = k + 1; e->options[m].name != NULL; m++) {
				cr_assert_str_neq(o->name, e->options[m].name, "%s: --%s twice",
						  e->name, o->name);
				cr_assert(o->short_name == 0 ||
						  o->short_name != e->options[m].short_name,
					  "%s: -%c twice", e->name, o->short_name);
			}
		}
	}
}

Test(cli_help, command_help_shows_usage_and_every_option)
{
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];
		char *help = print_to_string(cmd_print_help, e);
		char usage[256];

		snprintf(usage, sizeof(usage), "Usage: vmctl %s %s\n", e->name, e->usage);
		cr_assert(strncmp(help, usage, strlen(usage)) == 0, "%s", help);
		cr_assert(strstr(help, "-h, --help") != NULL, "%s", help);
		for (size_t k = 0; e->options != NULL && e->options[k].name != NULL; k++) {
			char label[128];

			snprintf(label, sizeof(label), "--%s%s%s", e->options[k].name,
				 e->options[k].arg != NULL ? " " : "",
				 e->options[k].arg != NULL ? e->options[k].arg : "");
			cr_assert(strstr(help, label) != NULL, "'%s' missing from:\n%s", label, help);
		}
		for (char *line = help; *line != '\0';) {
			char *nl = strchr(line, '\n');

			cr_assert_not_null(nl);
			cr_assert_leq(nl - line, 79, "line too long in %s help: %.*s", e->name,
				      (int)(nl - line), line);
			line = nl + 1;
		}
		free(help);
	}
}

Test(cli_help, overview_lists_every_command)
{
	char *text = print_to_string(overview, NULL);

	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		char line[64];

		if (cmd_table[i]->flags & CMD_F_HIDDEN)
			continue;
		/* the name, then at least one space before its summary */
		snprintf(line, sizeof(line), "\n  %s ", cmd_table[i]->name);
		cr_assert(strstr(text, line) != NULL, "%s missing:\n%s", cmd_table[i]->name, text);
	}
	free(text);
}

Test(cli_help, launch_help_mentions_defaults)
{
	char *help = print_to_string(cmd_print_help, cmd_find("launch"));

	cr_assert(strstr(help, "Default: 1G, minimum: 512M.") != NULL, "%s", help);
	cr_assert(strstr(help, "(default\n                            300)") != NULL ||
			  strstr(help, "(default 300)") != NULL,
		  "%s", help);
	free(help);
}

/* docs/cli.md's table of Multipass's commands names every vmctl command
 * (those only vmctl has in a "(none)" row), so that none is left out. */
Test(cli_help, the_multipass_table_names_every_command)
{
	char *doc = NULL, *table, *end;
	size_t len = 0;
	FILE *f = fopen(CLI_DOC, "r");

	cr_assert_not_null(f, "cannot open %s", CLI_DOC);
	cr_assert_eq(getdelim(&doc, &len, '\0', f) > 0, true);
	fclose(f);
	table = strstr(doc, "\n## Multipass's commands in vmctl\n");
	cr_assert_not_null(table, "docs/cli.md lacks the table of Multipass's commands");
	end = strstr(table + 1, "\n## ");
	cr_assert_not_null(end);
	*end = '\0';
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		char cell[64];

		if (cmd_table[i]->flags & CMD_F_HIDDEN)
			continue;
		snprintf(cell, sizeof(cell), "`%s", cmd_table[i]->name);
		cr_expect(strstr(table, cell) != NULL, "the Multipass table does not mention %s",
			  cmd_table[i]->name);
	}
	free(doc);
}

static void man(FILE *f, const struct cmd_entry *e)
{
	cmd_print_man(f);
}

/* fmt with its one %s argument, dashes escaped as roff wants them (\-). */
static void roff_dashes(char *buf, size_t len, const char *fmt, const char *arg)
{
	size_t n = 0;
	char raw[256];

	snprintf(raw, sizeof(raw), fmt, arg);
	for (const char *p = raw; *p != '\0' && n + 3 < len; p++) {
		if (*p == '-')
			buf[n++] = '\\';
		buf[n++] = *p;
	}
	buf[n] = '\0';
}

Test(cli_help, man_page_has_every_command_and_option)
{
	char *page = print_to_string(man, NULL);
	char want[512];

	cr_assert_eq(strncmp(page, ".\\\" ", 4), 0);
	cr_assert_not_null(strstr(page, "\n.TH VMCTL 1 "));
	cr_assert_not_null(strstr(page, "\n.SH SYNOPSIS\n"));
	cr_assert_not_null(strstr(page, "\n.SH EXIT STATUS\n"));
	cr_assert_not_null(strstr(page, "\n.BR vmctld (8),\n"));
	for (size_t i = 0; cmd_table[i] != NULL; i++) {
		const struct cmd_entry *e = cmd_table[i];

		roff_dashes(want, sizeof(want), "\n.SS %s\n", e->name);
		cr_assert_not_null(strstr(page, want), "no section for %s", e->name);
		for (size_t k = 0; e->options != NULL && e->options[k].name != NULL; k++) {
			roff_dashes(want, sizeof(want), "--%s", e->options[k].name);
			strcat(want, "\\fR");
			cr_assert_not_null(strstr(page, want), "vmctl %s: no option --%s", e->name,
					   e->options[k].name);
		}
	}
	/* No line of text may start a roff request by accident. */
	for (const char *line = page; line != NULL && *line != '\0';) {
		const char *nl = strchr(line, '\n');
		int n = (int)(nl ? nl - line : (long)strlen(line));

		if (line[0] == '.' || line[0] == '\'')
			cr_assert(line[1] == '\\' || (line[1] >= 'A' && line[1] <= 'Z') ||
					  strncmp(line, ".nh", 3) == 0 || strncmp(line, ".nf", 3) == 0 ||
					  strncmp(line, ".fi", 3) == 0 || strncmp(line, ".br", 3) == 0,
				  "a line of text reads as a roff request: %.*s", n, line);
		line = nl ? nl + 1 : NULL;
	}
	/* Examples are kept verbatim (no fill), indented. */
	cr_assert_not_null(strstr(page, ".RS 4\n.nf\nvmctl launch \\-\\-name web"));
	free(page);
}
