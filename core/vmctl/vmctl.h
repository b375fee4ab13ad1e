/*
 * vmctl, the command-line client. One file per command (cmd-*.c), each
 * exporting a const struct cmd_entry; cmd.c lists them. The entries are
 * also the source of `vmctl help`, `vmctl COMMAND --help` and docs/cli.md,
 * so help and reference cannot drift apart.
 */
#ifndef VMCTL_CLI_H
#define VMCTL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <msgpack.h>

/* Exit codes (docs/protocol.md, "CLI exit codes"). */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
	EXIT_TIMEOUT = 5,
};

/* ---- command table ---- */

enum opt_flags {
	OPT_MULTI = 1u << 0, /* may be given more than once; every value is kept */
};

struct cmd_option {
	const char *name;  /* long name without the dashes: "name" for --name */
	char short_name;   /* 'n' for -n, or 0 */
	const char *arg;   /* metavariable ("NAME") if it takes a value, NULL for a flag */
	unsigned flags;    /* enum opt_flags */
	const char *help;
};

struct cmd_argument {
	const char *name; /* as in the usage line: "IMAGE", "NAME..." */
	const char *help;
};

enum cmd_flags {
	/* Positionals past max_args, and everything after "--", form a command
	 * line to run (exec): kept verbatim in cmd_args.rest. */
	CMD_F_REST = 1u << 0,
	/* Not listed by `vmctl help` (still documented under its own name). */
	CMD_F_HIDDEN = 1u << 1,
	/* Never asks the broker anything (so it needs no --timeout). */
	CMD_F_LOCAL = 1u << 2,
};

struct cmd_args;

struct cmd_entry {
	const char *name;
	const char *alias;   /* "ls" for list, or NULL */
	const char *usage;   /* what follows "vmctl NAME ": "[options] [IMAGE]" */
	const char *summary; /* one line for the command list */
	const char *help;    /* the full description, paragraphs separated by "\n\n" */
	const struct cmd_option *options;     /* terminated by an entry with name NULL */
	const struct cmd_argument *arguments; /* terminated by an entry with name NULL */
	int min_args;
	int max_args; /* -1: no limit */
	unsigned flags; /* enum cmd_flags */
	/* Seconds its requests wait for the broker (CLI_WAIT_*), changed by a
	 * CMD_OPTION_WAIT --timeout; 0 for a command whose --timeout means
	 * something else and which gives each request its own deadline. */
	unsigned wait;
	/* Returns the process exit code (enum cli_exit). */
	int (*exec)(const struct cmd_entry *self, struct cmd_args *args);
};

/* ---- args.c: option parsing and local validation (no I/O) ---- */

struct opt_slot {
	unsigned count;  /* times given */
	char **values;   /* every value given, in order (pointers into argv) */
	size_t n_values;
};

struct cmd_args {
	const struct cmd_entry *entry;
	struct opt_slot *opts; /* parallel to entry->options */
	size_t n_opts;
	char **argv; /* positional arguments (pointers into the caller's argv) */
	int argc;
	char **rest; /* CMD_F_REST: the command line to run */
	int nrest;
	bool help;   /* -h / --help was given */
};

enum render_format { FORMAT_TABLE, FORMAT_JSON, FORMAT_YAML, FORMAT_CSV };

/* Parse argv[0..argc) (the words after the command name) against e.
 * PROTO_E_INVALID_ARGUMENT with a sentence in err for the user. Unknown
 * options, missing values and positional counts are checked here. */
int args_parse(const struct cmd_entry *e, int argc, char **argv, struct cmd_args *a,
	       char *err, size_t errlen);
void args_free(struct cmd_args *a);
/* Was the option given (a flag, or an option with a value)? */
bool args_has(const struct cmd_args *a, const char *name);
/* The last value given for an option, or NULL. */
const char *args_get(const struct cmd_args *a, const char *name);
/* Every value of an OPT_MULTI option (count in *n). */
char **args_values(const struct cmd_args *a, const char *name, size_t *n);

/* Edit distance (insertions, deletions, substitutions); SIZE_MAX for long words. */
size_t args_distance(const char *a, const char *b);
/* Is typed probably a typo of known (for "did you mean" hints)? */
bool args_close_enough(const char *typed, const char *known);

/* --format: "table" (or def when absent), "json", "yaml", "csv". */
int args_format(const struct cmd_args *a, enum render_format *out, char *err, size_t errlen);
/* NAME... or --all, exactly one of them; every name valid. */
int args_names_or_all(const struct cmd_args *a, bool *all, char *err, size_t errlen);
/* A whole number of seconds (or minutes) in [min, max]: "300". */
int args_parse_uint(const char *what, const char *text, uint64_t min, uint64_t max,
		    uint64_t *out, char *err, size_t errlen);
/* The longest setting key the broker reads. */
#define ARGS_KEY_MAX 255
/* The KEY of get and set (len bytes, as KEY=VALUE is not cut): a key
 * local.NAME.... whose NAME is longer than an instance name may be gets the
 * instance name's message; no key is longer than ARGS_KEY_MAX. */
int args_validate_key(const char *key, size_t len, char *err, size_t errlen);
/* Snapshot names: a letter, then letters, digits and hyphens, not ending in '-'. */
int args_validate_snapshot_name(const char *name, char *err, size_t errlen);
/* "H:G" with H and G unsigned 32-bit ids. */
int args_parse_id_map(const char *text, uint32_t *host, uint32_t *guest, char *err, size_t errlen);
/* Split "NAME:PATH" (instance path) from a host path. A host path is one with
 * no ':' before the first '/', or one starting with '/' or '.' (so "./a:b" and
 * "/x:y" are host paths). On an instance path, *name_len is the length of NAME
 * and *path points after the ':'. */
bool args_split_instance_path(const char *spec, size_t *name_len, const char **path);

/* A growable NULL-terminated array of owned strings (an argv). */
struct strvec {
	char **v;
	size_t n, cap;
};
void strvec_init(struct strvec *sv);
int strvec_push(struct strvec *sv, const char *s);
int strvec_pushf(struct strvec *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strvec_free(struct strvec *sv);

/* Shell quoting for the remote side of ssh: a malloc'd copy of s that the
 * POSIX shell reads back as exactly s. Plain words stay unquoted. */
char *shell_quote(const char *s);
/* The quoted words joined with single spaces (malloc'd). */
char *shell_join(char *const *argv, int argc);

/* ---- render.c: one renderer for every command's output ---- */

enum render_kind {
	RENDER_TEXT,   /* str as is, ints in decimal, arrays one element per line */
	RENDER_STATE,  /* "running" -> "Running" */
	RENDER_SIZE,   /* bytes -> "1.0GiB" */
	RENDER_MOUNTS, /* [{source, target}] -> "SOURCE => TARGET" per line */
	RENDER_NETWORKS, /* [{name, mode, mac}] -> "NAME (MODE, MAC)" per line */
	RENDER_OPTIONAL, /* text; records leave out its line when it is empty */
};

struct render_column {
	const char *title; /* "IPv4" */
	const char *key;   /* "ipv4" */
	enum render_kind kind;
};

/* Output renderers. rows: a msgpack array of maps; columns: terminated by a
 * NULL title. Missing, nil and empty values show as "--" in tables. */
int render_table(FILE *out, const struct render_column *columns, const msgpack_object *rows);
/* "Key:   value" blocks, one per row, separated by a blank line (info). */
int render_records(FILE *out, const struct render_column *columns, const msgpack_object *rows);
int render_csv(FILE *out, const struct render_column *columns, const msgpack_object *rows);
/* The whole object, as is. */
int render_json(FILE *out, const msgpack_object *obj);
int render_yaml(FILE *out, const msgpack_object *obj);
/* table/records (when records is true), csv: rows taken from result[key];
 * json and yaml: the whole result. */
int render_result(FILE *out, enum render_format fmt, const struct render_column *columns,
		  bool records, const msgpack_object *result, const char *key);
/* One CSV field, quoted when needed (RFC 4180). */
void render_csv_field(FILE *out, const char *s);
/* Does a YAML plain scalar with this text read back as something other than
 * this string (null, bool, number, ...)? */
bool render_yaml_needs_quotes(const char *s);

/* ---- progress.c ---- */

/* One progress line fitted into width columns:
 * "TEXT [=====>     ]  45%" (no bar when fraction < 0). */
void progress_format(char *buf, size_t len, const char *text, double fraction, int width);
/* Show a progress notification (on stderr: redrawn in place on a terminal,
 * plain lines otherwise). */
void progress_show(const char *text, double fraction);
/* Clear a progress line left on the terminal. */
void progress_end(void);

/* ---- client.c: the connection to vmctld ---- */

struct cli_reply {
	int err;        /* 0 or a PROTO_E_* code */
	char *errmsg;   /* the broker's message (malloc'd) */
	msgpack_sbuffer data;       /* the result's bytes (the objects point into them) */
	msgpack_unpacked unpacked;
	const msgpack_object *result; /* when err == 0: the result map */
};

/* Seconds past a request's own --timeout before we stop waiting for the
 * broker's answer (it normally answers at the timeout itself). */
#define CLI_BACKSTOP 120

/* How long vmctl waits for the broker's answer when a command has no
 * --timeout of its own to add CLI_BACKSTOP to; CMD_OPTION_WAIT lets the
 * user change it. Each is above the broker's own deadlines for that kind of
 * request, so that its answer (and error) comes first. */
#define CLI_WAIT_QUICK 30   /* the broker answers alone: version, get, list */
#define CLI_WAIT_DRIVER 120 /* the driver answers too: info, networks, ssh_info */
#define CLI_WAIT_LONG 900   /* disks are copied or changed: clone, snapshot, delete */

/* While waiting, vmctl asks the broker a cheap question this often; a
 * broker that leaves it unanswered for CLI_PROBE_WAIT seconds is stopped or
 * hung, and vmctl gives up (exit 5) however long the request may take. */
#define CLI_PROBE_EVERY 10.0
#define CLI_PROBE_WAIT 15.0

#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)
/* The --timeout option of a command that has none of its own; read it
 * with cmd_wait_timeout(). */
#define CMD_OPTION_WAIT(seconds)                                                              \
	{ "timeout", 0, "SECONDS", 0,                                                         \
	  "Give up waiting for the broker's answer after SECONDS (default " CLI_STR(seconds) \
	  "); vmctl then exits 5, and what the broker was doing goes on." }

/*
 * Send one request to the broker (connecting, and starting it, on first use)
 * and wait for the answer, showing progress and warning notifications.
 * timeout_s: how long to wait for the answer (<= 0: cli_set_wait's); a
 * broker that stops answering is given up on sooner (CLI_PROBE_WAIT). The
 * message for a timeout names the broker's pid and its log.
 * Returns an exit code: EXIT_OK with *r filled (free with cli_reply_free),
 * or, after printing why, EXIT_FAILED / EXIT_USAGE / EXIT_TIMEOUT /
 * EXIT_UNREACHABLE.
 */
int cli_request(const char *method, const msgpack_sbuffer *params, double timeout_s,
		struct cli_reply *r);
/* The wait of a request given timeout_s <= 0 (the command's, set by
 * cmd_main; CLI_WAIT_QUICK until then). */
void cli_set_wait(double seconds);
void cli_reply_free(struct cli_reply *r);
/* Exit code for a broker error code. */
int cli_exit_for_error(int err);
/* Close the connection (at exit). */
void cli_disconnect(void);

/* ---- cmd.c: the table, dispatch and help ---- */

extern const struct cmd_entry *const cmd_table[];
const struct cmd_entry *cmd_find(const char *name);
/* main(): dispatch argv to a command; returns the exit code. */
int cmd_main(int argc, char **argv);
/* "vmctl: MESSAGE" + the usage line; returns EXIT_USAGE. */
int cmd_usage_error(const struct cmd_entry *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "vmctl: MESSAGE"; returns code. */
int cmd_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `vmctl COMMAND --help` */
void cmd_print_help(FILE *out, const struct cmd_entry *e);
/* `vmctl help` */
void cmd_print_overview(FILE *out);
/* The reference section of docs/cli.md. */
void cmd_print_markdown(FILE *out);
/* The manual page vmctl(1) in roff, from the same table (vmctl help --man). */
void cmd_print_man(FILE *out);

/* ---- pack helpers shared by the commands (cmd.c) ---- */

/* {names: [...], all: bool, ...}: packs the two keys only; the caller has
 * opened a map with room for them. */
void cmd_pack_names(msgpack_packer *pk, const struct cmd_args *a, bool all);
/* Validate NAME...|--all and send {names, all} (+ timeout when given) to
 * method; prints nothing on success. With timeout_opt, the request waits
 * for its value (default default_timeout) plus CLI_BACKSTOP; without, for
 * the command's wait. */
int cmd_names_request(struct cmd_args *a, const char *method, const char *timeout_opt,
		      uint64_t default_timeout);
/* Seconds to wait for the broker: the command's --timeout (CMD_OPTION_WAIT),
 * else def. EXIT_OK, or EXIT_USAGE after saying what is wrong. */
int cmd_wait_timeout(const struct cmd_args *a, unsigned def, double *seconds);

/* ---- the commands (cmd-*.c) ---- */

extern const struct cmd_entry cmd_launch_entry;
extern const struct cmd_entry cmd_list_entry;
extern const struct cmd_entry cmd_info_entry;
extern const struct cmd_entry cmd_start_entry;
extern const struct cmd_entry cmd_stop_entry;
extern const struct cmd_entry cmd_restart_entry;
extern const struct cmd_entry cmd_suspend_entry;
extern const struct cmd_entry cmd_delete_entry;
extern const struct cmd_entry cmd_recover_entry;
extern const struct cmd_entry cmd_purge_entry;
extern const struct cmd_entry cmd_exec_entry;
extern const struct cmd_entry cmd_shell_entry;
extern const struct cmd_entry cmd_transfer_entry;
extern const struct cmd_entry cmd_mount_entry;
extern const struct cmd_entry cmd_umount_entry;
extern const struct cmd_entry cmd_snapshot_entry;
extern const struct cmd_entry cmd_restore_entry;
extern const struct cmd_entry cmd_clone_entry;
extern const struct cmd_entry cmd_find_entry;
extern const struct cmd_entry cmd_networks_entry;
extern const struct cmd_entry cmd_drivers_entry;
extern const struct cmd_entry cmd_get_entry;
extern const struct cmd_entry cmd_set_entry;
extern const struct cmd_entry cmd_alias_entry;
extern const struct cmd_entry cmd_aliases_entry;
extern const struct cmd_entry cmd_unalias_entry;
extern const struct cmd_entry cmd_prefer_entry;
extern const struct cmd_entry cmd_run_alias_entry;
extern const struct cmd_entry cmd_wait_ready_entry;
extern const struct cmd_entry cmd_authenticate_entry;
extern const struct cmd_entry cmd_version_entry;
extern const struct cmd_entry cmd_help_entry;

/* ---- primary.c: the primary instance (client.primary-name) ---- */

/* The setting's value into buf ("" when there is no primary). Exit code. */
int primary_name(char *buf, size_t len);
/* No NAME and no --all: make the primary instance the command's one name
 * (*used = true). A usage error when client.primary-name is empty. */
int primary_default(struct cmd_args *a, bool *used);
/* NAME's state as `list` shows it ("running"), "" when not listed. Exit code. */
int primary_state(const char *name, char *state, size_t len);
/* Launch NAME with every default, printing "Launched: NAME". Exit code. */
int primary_launch(const char *name);
/* Mount the user's home folder into the primary instance NAME just
 * launched, unless client.primary-home-mount or local.privileged-mounts is
 * false; a failure is a warning (the launch stands). EXIT_OK. */
int primary_mount_home(const char *name);
/* After `vmctl launch` of NAME: primary_mount_home() if it is the primary. */
int primary_after_launch(const char *name);
/* Start (or resume) NAME and wait for SSH. Exit code. */
int primary_start(const char *name);

/* ---- alias.c: aliases (DATA/aliases.json) and their scripts (DATA/bin) ---- */

#define ALIAS_NAME_MAX 64

struct json_t;
struct alias_store {
	struct json_t *root; /* {"active-context": C, "contexts": {C: {NAME: {...}}}} */
};
/* Alias and context names: letters, digits, '-', '_', '.', not first. */
int alias_validate_name(const char *what, const char *name, char *err, size_t errlen);
/* A missing file is an empty store with the context "default". */
int alias_store_load(struct alias_store *s, char *err, size_t errlen);
int alias_store_save(const struct alias_store *s, char *err, size_t errlen);
void alias_store_free(struct alias_store *s);
const char *alias_active_context(const struct alias_store *s);
/* The aliases of a context ({NAME: {instance, command, working-directory}}), or NULL. */
struct json_t *alias_context(const struct alias_store *s, const char *context);
/* Does any context have an alias of that name? */
bool alias_name_used(const struct alias_store *s, const char *name);
/* The folder of the scripts, for PATH. */
int alias_bin_dir(char *buf, size_t len);
/* Write the script of alias name (making the folder if needed). */
int alias_script_write(const char *name, char *err, size_t errlen);
void alias_script_remove(const char *name);
/* After instances were purged: remove the aliases of instances no scope has
 * any more, saying so. Exit code. */
int alias_forget_gone(void);

/* ---- ssh.c: exec, shell and transfer over the OpenSSH client ---- */

struct ssh_target {
	char *host;
	uint64_t port;
	char *user;
	char *key;
	/* ssh_target_probe(): the guest has no SSH (its port refuses
	 * connections) and the driver runs commands without it; why says so. */
	bool no_ssh;
	char *why;
};
/* Ask the broker for ssh_info of an instance. Exit code. */
int ssh_target_get(const char *name, struct ssh_target *t);
/* The same, with the broker looking whether SSH is up (ssh_info {probe}). */
int ssh_target_probe(const char *name, struct ssh_target *t);
/* cmd-exec.c: run the command through the broker's exec (no SSH); the exit
 * code is the command's. */
int exec_without_ssh(const char *name, char **argv, int argc, const char *cwd);
void ssh_target_free(struct ssh_target *t);
/* Push "ssh" and its options for t onto argv (not the destination).
 * program: "ssh" or "scp" (scp spells the port -P). */
int ssh_push_options(struct strvec *argv, const char *program, const struct ssh_target *t);
/* "USER@HOST" (IPv6 literals bracketed when bracket is set, for scp). */
int ssh_push_destination(struct strvec *argv, const struct ssh_target *t, const char *suffix,
			 bool bracket);
/* Replace the process with argv (the exit status becomes the command's);
 * returns EXIT_FAILED after printing why, if it cannot. */
int ssh_exec(struct strvec *argv);
/* Run argv as a child and wait: its exit status, or EXIT_FAILED. */
int ssh_run(struct strvec *argv);

#endif
