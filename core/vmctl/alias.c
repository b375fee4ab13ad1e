/*
 * Aliases, as in Multipass: a name that runs a command in an instance. They
 * are the client's, not the broker's: DATA/aliases.json holds them (grouped
 * in contexts, one of them active, switched by `vmctl prefer`), and each
 * alias name has a small script in DATA/bin, the folder the user adds to
 * PATH, that runs `vmctl run-alias NAME -- ARGS`.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define ALIAS_FILE_MAX (1u << 20)

int alias_validate_name(const char *what, const char *name, char *err, size_t errlen)
{
	size_t len = strlen(name);

	if (len == 0) {
		snprintf(err, errlen, "the %s name is empty", what);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (len > ALIAS_NAME_MAX) {
		snprintf(err, errlen, "%s name '%.40s...' is longer than %d characters", what, name,
			 ALIAS_NAME_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '-' || c == '_' || c == '.'));

		if (!ok) {
			snprintf(err, errlen,
				 "invalid %s name '%s': use letters, digits, '-', '_' and '.', starting "
				 "with a letter or digit", what, name);
			return PROTO_E_INVALID_ARGUMENT;
		}
	}
	return 0;
}

static int alias_path(char *buf, size_t len, const char *leaf)
{
	char dir[PATH_MAX];

	if (data_dir(dir, sizeof(dir)) < 0)
		return PROTO_E_NOT_FOUND;
	if ((size_t)snprintf(buf, len, "%s/%s", dir, leaf) >= len)
		return PROTO_E_INVALID_ARGUMENT;
	return 0;
}

int alias_bin_dir(char *buf, size_t len)
{
	return alias_path(buf, len, "bin");
}

void alias_store_free(struct alias_store *s)
{
	json_decref(s->root);
	s->root = NULL;
}

/* {"active-context": "default", "contexts": {"default": {}}} */
static json_t *alias_empty_root(void)
{
	return json_pack("{s:s, s:{s:{}}}", "active-context", "default", "contexts", "default");
}

int alias_store_load(struct alias_store *s, char *err, size_t errlen)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *contexts;
	const char *active;

	s->root = NULL;
	if (alias_path(path, sizeof(path), "aliases.json") < 0) {
		snprintf(err, errlen, "cannot find the data folder (set VMCTL_DATA or HOME)");
		return PROTO_E_NOT_FOUND;
	}
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		s->root = alias_empty_root();
		return s->root != NULL ? 0 : PROTO_E_NOMEM;
	}
	s->root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (s->root == NULL) {
		snprintf(err, errlen, "%s: line %d, column %d: %s", path, jerr.line, jerr.column,
			 jerr.text);
		return PROTO_E_INVALID_ARGUMENT;
	}
	contexts = json_object_get(s->root, "contexts");
	active = json_string_value(json_object_get(s->root, "active-context"));
	if (!json_is_object(contexts) || active == NULL) {
		snprintf(err, errlen, "%s is not a file of vmctl aliases (no contexts or "
			 "active-context)", path);
		alias_store_free(s);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (json_object_get(contexts, active) == NULL)
		json_object_set_new(contexts, active, json_object());
	return 0;
}

int alias_store_save(const struct alias_store *s, char *err, size_t errlen)
{
	char path[PATH_MAX], dir[PATH_MAX];
	char *text;
	int rc;

	if (alias_path(path, sizeof(path), "aliases.json") < 0 || data_dir(dir, sizeof(dir)) < 0) {
		snprintf(err, errlen, "cannot find the data folder (set VMCTL_DATA or HOME)");
		return PROTO_E_NOT_FOUND;
	}
	text = json_dumps(s->root, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	rc = mkdir_p(dir, 0700);
	if (rc == 0) {
		size_t len = strlen(text);
		char *line = realloc(text, len + 2);

		if (line == NULL) {
			rc = PROTO_E_NOMEM;
		} else {
			text = line;
			memcpy(text + len, "\n", 2);
			rc = atomic_write_file(path, text, len + 1, 0600);
		}
	}
	if (rc < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, proto_strerror(rc));
	free(text);
	return rc;
}

const char *alias_active_context(const struct alias_store *s)
{
	return json_string_value(json_object_get(s->root, "active-context"));
}

json_t *alias_context(const struct alias_store *s, const char *context)
{
	return json_object_get(json_object_get(s->root, "contexts"), context);
}

bool alias_name_used(const struct alias_store *s, const char *name)
{
	const char *context;
	json_t *aliases;

	json_object_foreach(json_object_get(s->root, "contexts"), context, aliases)
		if (json_object_get(aliases, name) != NULL)
			return true;
	return false;
}

int alias_script_write(const char *name, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX + 80], exe[PATH_MAX];
	const char *data = getenv("VMCTL_DATA");
	char *quoted_exe = NULL, *quoted_data = NULL, *text = NULL;
	struct stat st;
	int rc = PROTO_E_NOMEM;

	if (alias_bin_dir(dir, sizeof(dir)) < 0 || exe_dir(exe, sizeof(exe)) < 0) {
		snprintf(err, errlen, "cannot find the data folder or vmctl itself");
		return PROTO_E_NOT_FOUND;
	}
	if (stat(dir, &st) < 0) {
		rc = mkdir_p(dir, 0755);
		if (rc < 0) {
			snprintf(err, errlen, "cannot make %s: %s", dir, proto_strerror(rc));
			return rc;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((size_t)snprintf(exe + strlen(exe), sizeof(exe) - strlen(exe), "/vmctl") >=
	    sizeof(exe) - strlen(exe)) {
		snprintf(err, errlen, "the path of vmctl is too long");
		return PROTO_E_INVALID_ARGUMENT;
	}
	quoted_exe = shell_quote(exe);
	/* A data folder given by VMCTL_DATA is the one the alias belongs to. */
	if (data != NULL && data[0] != '\0') {
		char abs[PATH_MAX];

		if (data_dir(abs, sizeof(abs)) == 0)
			quoted_data = shell_quote(abs);
		if (quoted_data == NULL)
			goto out_free;
	}
	if (quoted_exe == NULL ||
	    asprintf(&text,
		     "#!/bin/sh\n"
		     "# The vmctl alias %s: made by 'vmctl alias', removed by 'vmctl unalias %s'.\n"
		     "%s%s%s"
		     "exec %s run-alias %s -- \"$@\"\n",
		     name, name, quoted_data != NULL ? "VMCTL_DATA=" : "",
		     quoted_data != NULL ? quoted_data : "",
		     quoted_data != NULL ? "\nexport VMCTL_DATA\n" : "", quoted_exe, name) < 0) {
		text = NULL;
		goto out_free;
	}
	rc = atomic_write_file(path, text, strlen(text), 0755);
	if (rc < 0)
		snprintf(err, errlen, "cannot write %s: %s", path, proto_strerror(rc));
	else if (chmod(path, 0755) < 0)
		rc = PROTO_E_IO;
out_free:
	if (rc == PROTO_E_NOMEM)
		snprintf(err, errlen, "out of memory");
	free(text);
	free(quoted_exe);
	free(quoted_data);
	return rc;
}

void alias_script_remove(const char *name)
{
	char dir[PATH_MAX], path[PATH_MAX + 80];

	if (alias_bin_dir(dir, sizeof(dir)) < 0)
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

/* Is name an instance of any scope (every scope's list, deleted ones too)? */
static bool alias_instance_listed(const msgpack_object *list, const char *name)
{
	for (uint32_t i = 0; list != NULL && list->type == MSGPACK_OBJECT_ARRAY &&
			     i < list->via.array.size;
	     i++)
		if (proto_obj_streq(proto_map_get(&list->via.array.ptr[i], "name"), name))
			return true;
	return false;
}

int alias_forget_gone(void)
{
	struct alias_store s;
	const msgpack_object *list;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	const char *context;
	json_t *aliases;
	char err[512];
	struct strvec removed;
	int rc;

	if (alias_store_load(&s, err, sizeof(err)) < 0)
		return cmd_error(EXIT_FAILED, "%s", err);
	{
		size_t n = 0;

		json_object_foreach(json_object_get(s.root, "contexts"), context, aliases)
			n += json_object_size(aliases);
		if (n == 0) {
			alias_store_free(&s);
			return EXIT_OK;
		}
	}
	strvec_init(&removed);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	proto_pack_kv_bool(&pk, "all_scopes", true);
	rc = cli_request("list", &sb, 0, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc != EXIT_OK) {
		cli_reply_free(&r);
		alias_store_free(&s);
		return rc;
	}
	list = proto_map_get(r.result, "instances");
	json_object_foreach(json_object_get(s.root, "contexts"), context, aliases) {
		const char *name;
		json_t *def, *tmp;

		json_object_foreach_safe(aliases, tmp, name, def) {
			const char *instance = json_string_value(json_object_get(def, "instance"));

			if (instance == NULL || alias_instance_listed(list, instance))
				continue;
			printf("Removed alias %s (context %s): the instance %s is gone\n", name,
			       context, instance);
			if (strvec_push(&removed, name) < 0)
				continue; /* kept: out of memory */
			json_object_del(aliases, name);
		}
	}
	cli_reply_free(&r);
	rc = EXIT_OK;
	if (removed.n > 0 && alias_store_save(&s, err, sizeof(err)) < 0)
		rc = cmd_error(EXIT_FAILED, "%s", err);
	/* The script goes with the last context that had the name. */
	for (size_t i = 0; rc == EXIT_OK && i < removed.n; i++)
		if (!alias_name_used(&s, removed.v[i]))
			alias_script_remove(removed.v[i]);
	strvec_free(&removed);
	alias_store_free(&s);
	return rc;
}
