/* Global settings (settings.yaml): a flat mapping of known keys to checked values. */
#include "vmcommon.h"
#include "yamlio.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/proto.h>

#define SETTINGS_FILE_MAX (1u << 20)
#define SETTINGS_VALUE_MAX 4096

/* The seed's aliases. Which drivers exist is not written here: the broker
 * finds their helpers (vmctl-DRIVER-helper) and asks them. */
static const struct {
	const char *alias, *driver;
} driver_aliases[] = {
	{ "hyper-v", "hyperv" },
	{ "vbox", "virtualbox" },
};

const char *driver_alias(const char *driver, size_t i)
{
	for (size_t k = 0; k < sizeof(driver_aliases) / sizeof(driver_aliases[0]); k++)
		if (strcmp(driver_aliases[k].driver, driver) == 0 && i-- == 0)
			return driver_aliases[k].alias;
	return NULL;
}

bool driver_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > DRIVER_NAME_MAX || name[0] < 'a' || name[0] > 'z')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(name[i] >= 'a' && name[i] <= 'z') && !(name[i] >= '0' && name[i] <= '9') &&
		    name[i] != '-' && name[i] != '_')
			return false;
	return true;
}

int driver_canonical(const char *name, char *buf, size_t len)
{
	char lower[DRIVER_NAME_MAX + 2];
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > DRIVER_NAME_MAX)
		return PROTO_E_INVALID_ARGUMENT;
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);
	for (size_t i = 0; i < sizeof(driver_aliases) / sizeof(driver_aliases[0]); i++) {
		if (!strcmp(lower, driver_aliases[i].alias)) {
			snprintf(buf, len, "%s", driver_aliases[i].driver);
			return 0;
		}
	}
	if (!driver_name_valid(lower) || n + 1 > len)
		return PROTO_E_INVALID_ARGUMENT;
	memcpy(buf, lower, n + 1);
	return 0;
}

/*
 * A check stores the value as typed unless it sets *canonical (aliases,
 * letter case). On failure it fills err with what is allowed.
 */
typedef int (*settings_check_fn)(const char *key, const char *value, const char **canonical, char *err,
				 size_t errlen);

struct settings_def {
	const char *key;
	const char *(*default_value)(void);
	settings_check_fn check;
	/* Checks against the host, on set only (NULL: none). */
	settings_check_fn usable;
};

static const char *settings_default_empty(void)
{
	return "";
}

static const char *settings_default_accel(void)
{
	return "auto";
}

static const char *settings_default_libvirt_uri(void)
{
	return geteuid() == 0 ? "qemu:///system" : "qemu:///session";
}

static const char *settings_default_refresh(void)
{
	return "6h";
}

static const char *settings_default_prune(void)
{
	return "30d";
}

static const char *settings_default_true(void)
{
	return "true";
}

static int settings_check_driver(const char *key, const char *value, const char **canonical, char *err,
				 size_t errlen)
{
	/* The caller copies *canonical before the next check. */
	static char name[DRIVER_NAME_MAX + 1];

	if (driver_canonical(value, name, sizeof(name)) == 0) {
		*canonical = name;
		return 0;
	}
	snprintf(err, errlen, "invalid value \"%s\" for %s: %s", value, key, DRIVER_NAME_RULE);
	return PROTO_E_INVALID_ARGUMENT;
}

static int settings_check_accel(const char *key, const char *value, const char **canonical, char *err,
				size_t errlen)
{
	static const char *const accels[] = { "auto", "kvm", "tcg" };

	for (size_t i = 0; i < sizeof(accels) / sizeof(accels[0]); i++) {
		if (!strcasecmp(value, accels[i])) {
			*canonical = accels[i];
			return 0;
		}
	}
	snprintf(err, errlen, "invalid value \"%s\" for %s: choose one of auto, kvm, tcg", value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

static int settings_check_bool(const char *key, const char *value, const char **canonical, char *err,
			       size_t errlen)
{
	if (!strcasecmp(value, "true")) {
		*canonical = "true";
		return 0;
	}
	if (!strcasecmp(value, "false")) {
		*canonical = "false";
		return 0;
	}
	snprintf(err, errlen, "invalid value \"%s\" for %s: choose one of true, false", value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

static bool settings_has_space_or_control(const char *value)
{
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return true;
	return false;
}

static bool settings_has_control(const char *value)
{
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		if (*p < ' ' || *p == 0x7f)
			return true;
	return false;
}

/* "scheme:" as RFC 3986 spells it, followed by "//". */
static bool settings_has_scheme(const char *value, const char *const *allowed)
{
	const char *colon = strchr(value, ':');
	size_t n;

	if (!colon || colon == value || strncmp(colon, "://", 3) != 0)
		return false;
	n = (size_t)(colon - value);
	if (!isalpha((unsigned char)value[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)value[i]) && !strchr("+.-", value[i]))
			return false;
	if (!allowed)
		return true;
	for (size_t i = 0; allowed[i]; i++)
		if (strlen(allowed[i]) == n && !strncasecmp(value, allowed[i], n))
			return true;
	return false;
}

static int settings_check_libvirt_uri(const char *key, const char *value, const char **canonical, char *err,
				      size_t errlen)
{
	if (!settings_has_space_or_control(value) && settings_has_scheme(value, NULL))
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: use a libvirt connection URI such as qemu:///system or qemu:///session",
		 value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

static int settings_check_lxd_type(const char *key, const char *value, const char **canonical,
				   char *err, size_t errlen)
{
	static const char *const types[] = { "auto", "vm", "container" };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (!strcasecmp(value, types[i])) {
			*canonical = types[i];
			return 0;
		}
	}
	snprintf(err, errlen, "invalid value \"%s\" for %s: choose one of auto, vm, container", value,
		 key);
	return PROTO_E_INVALID_ARGUMENT;
}

/* "" (the helper looks in LXD's usual places) or an absolute path. */
static int settings_check_lxd_socket(const char *key, const char *value, const char **canonical,
				     char *err, size_t errlen)
{
	(void)canonical;
	if (value[0] == '\0' || (value[0] == '/' && !settings_has_control(value)))
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: give the absolute path of LXD's unix socket, or \"\" for "
		 "the usual places", settings_has_control(value) ? "" : value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

/* The PowerShell of the hyperv driver: an absolute path (C:\\... on
 * Windows), or "" for powershell.exe in PATH. */
static int settings_check_hyperv_powershell(const char *key, const char *value,
					    const char **canonical, char *err, size_t errlen)
{
	bool drive = isalpha((unsigned char)value[0]) && value[1] == ':' &&
		     (value[2] == '\\' || value[2] == '/');

	(void)canonical;
	if (value[0] == '\0' || ((value[0] == '/' || drive) && !settings_has_control(value)))
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: give the absolute path of powershell.exe, or \"\" for "
		 "the one in PATH", settings_has_control(value) ? "" : value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

/* "" (VBoxManage from PATH) or the absolute path of VBoxManage. */
static int settings_check_vbox_manage(const char *key, const char *value, const char **canonical,
				      char *err, size_t errlen)
{
	(void)canonical;
	if (value[0] == '\0' || (value[0] == '/' && !settings_has_control(value)))
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: give the absolute path of VBoxManage, or \"\" to "
		 "find it in PATH", settings_has_control(value) ? "" : value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

static bool settings_is_hex(char c)
{
	return isxdigit((unsigned char)c) != 0;
}

/* A path of a URL: RFC 3986 pchar and '/', %-escapes well formed. No '?'
 * or '#': the image code appends to it. */
static const char *settings_url_path_problem(const char *p)
{
	for (; *p; p++) {
		if (*p == '%') {
			if (!settings_is_hex(p[1]) || !settings_is_hex(p[2]))
				return "a '%' not followed by two hex digits";
			p += 2;
			continue;
		}
		if (*p == '?' || *p == '#')
			return "a query or fragment ('?' or '#'): the mirror is a folder URL";
		if (!isalnum((unsigned char)*p) && !strchr("-._~/!$&'()*+,;=:@", *p))
			return "a character that URLs do not have";
	}
	return NULL;
}

/* http(s)://HOST[:PORT][/PATH], HOST a name, an IPv4 or a [IPv6] literal. */
static const char *settings_http_url_problem(const char *url)
{
	const char *host = strstr(url, "://") + 3, *end = host + strcspn(host, "/");
	const char *port = NULL;

	if (end == host)
		return "no host";
	if (memchr(host, '@', (size_t)(end - host)))
		return "a user name or password (they would be shown and logged)";
	if (*host == '[') {
		const char *close = memchr(host, ']', (size_t)(end - host));

		if (!close || close == host + 1)
			return "a '[' without an IPv6 address and ']'";
		for (const char *p = host + 1; p < close; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return "an IPv6 address with a character that is not a hex digit, ':' or '.'";
		if (close + 1 < end && close[1] != ':')
			return "something after the IPv6 address that is not :PORT";
		port = close + 1 < end ? close + 1 : NULL;
	} else {
		for (const char *p = host; p < end; p++) {
			if (*p == ':') {
				port = p;
				break;
			}
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
				return "a host name with a character other than letters, digits, '-' and '.'";
		}
		if (port == host)
			return "no host";
	}
	if (port) {
		unsigned long v = 0;
		const char *p = port + 1;

		if (p == end)
			return "an empty port";
		for (; p < end; p++) {
			if (!isdigit((unsigned char)*p))
				return "a port that is not a number";
			v = v * 10 + (unsigned long)(*p - '0');
			if (v > 65535)
				return "a port above 65535";
		}
		if (v == 0)
			return "port 0";
	}
	return settings_url_path_problem(end);
}

static int settings_check_mirror(const char *key, const char *value, const char **canonical, char *err,
				 size_t errlen)
{
	static const char *const schemes[] = { "http", "https", "file", NULL };
	const char *problem = NULL;

	if (!*value)
		return 0;
	if (settings_has_space_or_control(value) || !settings_has_scheme(value, schemes)) {
		snprintf(err, errlen,
			 "invalid value \"%s\" for %s: use an http://, https:// or file:// URL of a simplestreams mirror, or \"\" for the default",
			 value, key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (strncasecmp(value, "file:", 5) == 0) {
		const char *p = value + strlen("file://");

		if (strncasecmp(p, "localhost/", 10) == 0)
			p += strlen("localhost");
		if (*p != '/')
			problem = "no absolute path (file:///PATH)";
		else
			problem = settings_url_path_problem(p);
	} else {
		problem = settings_http_url_problem(value);
	}
	if (!problem)
		return 0;
	snprintf(err, errlen, "invalid value \"%s\" for %s: the URL has %s", value, key, problem);
	return PROTO_E_INVALID_ARGUMENT;
}

/* file:///a/b%20c -> "/a/b c" (the URL passed settings_check_mirror). */
static int settings_file_url_path(const char *url, char *path, size_t len)
{
	const char *p = url + strlen("file://");
	size_t n = 0;

	if (strncasecmp(p, "localhost/", 10) == 0)
		p += strlen("localhost");
	for (; *p; p++) {
		char c = *p;

		if (c == '%') {
			unsigned v;

			if (sscanf(p + 1, "%2x", &v) != 1 || v == 0)
				return PROTO_E_INVALID_ARGUMENT;
			c = (char)v;
			p += 2;
		}
		if (n + 1 >= len)
			return PROTO_E_INVALID_ARGUMENT;
		path[n++] = c;
	}
	path[n] = '\0';
	return 0;
}

/* On set (not on load, where a folder gone since must not stop the broker):
 * a file:// mirror is a folder holding a simplestreams tree. */
static int settings_usable_mirror(const char *key, const char *value, const char **canonical, char *err,
				  size_t errlen)
{
	static const char *const indexes[] = { "releases/streams/v1/index.json", "daily/streams/v1/index.json" };
	char path[4096], index[4200];
	struct stat st;

	if (strncasecmp(value, "file:", 5) != 0)
		return 0; /* http(s): fetched when an image is looked up */
	if (settings_file_url_path(value, path, sizeof(path)) < 0) {
		snprintf(err, errlen, "invalid value \"%s\" for %s: the path is too long or has a %%00", value, key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "invalid value \"%s\" for %s: %s: %s", value, key, path, strerror(errno));
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen,
			 "invalid value \"%s\" for %s: %s is not a folder; a file:// mirror is the folder of a simplestreams tree (with releases/streams/v1/index.json)",
			 value, key, path);
		return PROTO_E_INVALID_ARGUMENT;
	}
	for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {
		snprintf(index, sizeof(index), "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
			 indexes[i]);
		if (stat(index, &st) == 0 && S_ISREG(st.st_mode) && access(index, R_OK) == 0)
			return 0;
	}
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: %s holds no readable releases/streams/v1/index.json or daily/streams/v1/index.json, so it is no simplestreams mirror",
		 value, key, path);
	return PROTO_E_INVALID_ARGUMENT;
}

static int settings_check_duration(const char *key, const char *value, const char **canonical, char *err,
				   size_t errlen)
{
	uint64_t seconds;
	char ignored[160];

	if (parse_duration(value, &seconds, ignored, sizeof(ignored)) == 0)
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: use a number with a unit s, m, h, d or w (e.g. 30m, 6h, 7d), or \"never\"",
		 value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

static int settings_check_network(const char *key, const char *value, const char **canonical, char *err,
				  size_t errlen)
{
	char why[128];
	size_t n = strlen(value);

	/* Host network names differ per platform ("eth0", "Default Switch"); the
	 * driver checks that it exists. Nothing else gets through to a helper's
	 * command lines. */
	if (!*value || validate_network_name(value, why, sizeof(why)) == 0)
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%.*s%s\" for %s: %s; a network name has letters, digits, '-', '_', '.' and single spaces between words (at most %d characters), or is \"\" for none",
		 settings_has_control(value) ? 0 : (n > 80 ? 80 : (int)n), value, n > 80 ? "..." : "",
		 key, why, NETWORK_NAME_SETTING_MAX);
	return PROTO_E_INVALID_ARGUMENT;
}

static const char *settings_default_primary(void)
{
	return "primary";
}

static const char *settings_default_image(void)
{
	return "lts";
}

/* An instance name, or "" for no primary instance. */
static int settings_check_primary(const char *key, const char *value, const char **canonical,
				  char *err, size_t errlen)
{
	char why[256];

	if (!*value || validate_instance_name(value, why, sizeof(why)) == 0)
		return 0;
	snprintf(err, errlen, "invalid value for %s: %s; or \"\" for no primary instance", key,
		 why);
	return PROTO_E_INVALID_ARGUMENT;
}

/* What `launch` takes as IMAGE: an alias, an http(s) or file URL, or an
 * absolute path (the broker, not the CLI, reads this one). */
static int settings_check_image(const char *key, const char *value, const char **canonical,
				char *err, size_t errlen)
{
	static const char *const schemes[] = { "http", "https", "file", NULL };

	if (!*value || settings_has_space_or_control(value)) {
		snprintf(err, errlen,
			 "invalid value \"%s\" for %s: give an image as launch takes it (an alias such "
			 "as lts or 24.04, an http(s):// or file:// URL, or an absolute path), without "
			 "spaces", settings_has_control(value) ? "" : value, key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (strstr(value, "://") ? settings_has_scheme(value, schemes)
				 : value[0] == '/' || !strchr(value, '/'))
		return 0;
	snprintf(err, errlen,
		 "invalid value \"%s\" for %s: a local image must be an absolute path (or a "
		 "file:// URL), and a URL http://, https:// or file://", value, key);
	return PROTO_E_INVALID_ARGUMENT;
}

/* "" (none) or a crypt(3) hash: the broker hashes what `vmctl set` gives. */
static int settings_check_passphrase(const char *key, const char *value, const char **canonical,
				     char *err, size_t errlen)
{
	if (!*value || (value[0] == '$' && strspn(value, "$./0123456789abcdefghijklmnopqrstuvwxyz"
							 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == strlen(value)))
		return 0;
	snprintf(err, errlen, "invalid value for %s: settings.yaml keeps only its crypt(3) hash; "
		 "set the passphrase with vmctl set %s=PASSPHRASE", key, key);
	return PROTO_E_INVALID_ARGUMENT;
}

static const char *settings_default_driver_fn(void)
{
	return settings_default_driver();
}

static const struct settings_def settings_defs[] = {
	{ "local.driver", settings_default_driver_fn, settings_check_driver, NULL },
	{ "local.qemu.accel", settings_default_accel, settings_check_accel, NULL },
	{ "local.libvirt.uri", settings_default_libvirt_uri, settings_check_libvirt_uri, NULL },
	{ "local.libvirt.accel", settings_default_accel, settings_check_accel, NULL },
	{ "local.lxd.socket", settings_default_empty, settings_check_lxd_socket, NULL },
	{ "local.lxd.instance-type", settings_default_accel, settings_check_lxd_type, NULL },
	{ "local.hyperv.powershell", settings_default_empty, settings_check_hyperv_powershell, NULL },
	{ "local.hyperv.switch", settings_default_empty, settings_check_network, NULL },
	{ "local.virtualbox.manage", settings_default_empty, settings_check_vbox_manage, NULL },
	{ "local.image.mirror", settings_default_empty, settings_check_mirror, settings_usable_mirror },
	{ "local.image.refresh", settings_default_refresh, settings_check_duration, NULL },
	{ "local.image.prune-after", settings_default_prune, settings_check_duration, NULL },
	{ "local.bridged-network", settings_default_empty, settings_check_network, NULL },
	{ "local.privileged-mounts", settings_default_true, settings_check_bool, NULL },
	{ "local.image.default", settings_default_image, settings_check_image, NULL },
	{ "client.primary-name", settings_default_primary, settings_check_primary, NULL },
	{ "local.passphrase", settings_default_empty, settings_check_passphrase, NULL },
	{ "client.primary-home-mount", settings_default_true, settings_check_bool, NULL },
};
#define SETTINGS_N_DEFS (sizeof(settings_defs) / sizeof(settings_defs[0]))

static const char *const settings_keys[] = {
	"local.driver",	       "local.qemu.accel",	"local.libvirt.uri",	 "local.libvirt.accel",
	"local.lxd.socket",    "local.lxd.instance-type",
	"local.hyperv.powershell", "local.hyperv.switch",
	"local.virtualbox.manage",
	"local.image.mirror",
	"local.image.refresh", "local.image.prune-after", "local.bridged-network", "local.privileged-mounts",
	"local.image.default", "client.primary-name", "local.passphrase",
	"client.primary-home-mount",
	NULL,
};

const char *const *settings_known_keys(void)
{
	return settings_keys;
}

static const struct settings_def *settings_find_def(const char *key)
{
	for (size_t i = 0; i < SETTINGS_N_DEFS; i++)
		if (!strcmp(settings_defs[i].key, key))
			return &settings_defs[i];
	return NULL;
}

static struct setting *settings_find(const struct settings *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].key, key))
			return &s->v[i];
	return NULL;
}

const char *settings_get(const struct settings *s, const char *key)
{
	const struct settings_def *def;
	const struct setting *found;

	if (!key)
		return NULL;
	found = s ? settings_find(s, key) : NULL;
	if (found)
		return found->value;
	def = settings_find_def(key);
	return def ? def->default_value() : NULL;
}

/* Store a value that already passed its check. */
static int settings_store(struct settings *s, const char *key, const char *value)
{
	struct setting *found = settings_find(s, key), *grown;
	char *copy = strdup(value);

	if (!copy)
		return PROTO_E_NOMEM;
	if (found) {
		free(found->value);
		found->value = copy;
		return 0;
	}
	grown = realloc(s->v, (s->n + 1) * sizeof(*s->v));
	if (!grown)
		goto out_free_copy;
	s->v = grown;
	s->v[s->n].key = strdup(key);
	if (!s->v[s->n].key)
		goto out_free_copy;
	s->v[s->n].value = copy;
	s->n++;
	return 0;

out_free_copy:
	free(copy);
	return PROTO_E_NOMEM;
}

/* Check key and value; *stored is what would be kept. */
static int settings_check(const char *key, const char *value, const char **stored, char *err, size_t errlen)
{
	const struct settings_def *def;
	const char *canonical = NULL;
	int rc;

	def = key ? settings_find_def(key) : NULL;
	if (!def) {
		snprintf(err, errlen, "unknown setting \"%s\"", key ? key : "");
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (!value) {
		snprintf(err, errlen, "no value given for %s", key);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (strlen(value) > SETTINGS_VALUE_MAX) {
		snprintf(err, errlen, "invalid value for %s: at most %d bytes are allowed", key, SETTINGS_VALUE_MAX);
		return PROTO_E_INVALID_ARGUMENT;
	}
	rc = def->check(key, value, &canonical, err, errlen);
	if (rc < 0)
		return rc;
	*stored = canonical ? canonical : value;
	return 0;
}

int settings_set(struct settings *s, const char *key, const char *value, char *err, size_t errlen)
{
	const struct settings_def *def;
	const char *stored, *ignored = NULL;
	int rc;

	rc = settings_check(key, value, &stored, err, errlen);
	if (rc < 0)
		return rc;
	def = settings_find_def(key);
	if (def->usable && *stored && (rc = def->usable(key, stored, &ignored, err, errlen)) < 0)
		return rc;
	rc = settings_store(s, key, stored);
	if (rc < 0)
		snprintf(err, errlen, "out of memory while setting %s", key);
	return rc;
}

void settings_free(struct settings *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].key);
		free(s->v[i].value);
	}
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static int settings_parse(struct yio_reader *r, struct settings *s)
{
	bool empty;
	int rc;

	if ((rc = yio_begin(r, &empty)) < 0 || empty)
		return rc;
	if (yio_is_scalar(r) && yio_scalar_is_null(r))
		return yio_end(r);
	if (r->ev.type != YAML_MAPPING_START_EVENT)
		return yio_fail(r, "the settings file must be a mapping of \"key: value\" lines");

	for (;;) {
		char key[128], msg[512];
		const char *stored;

		if ((rc = yio_next(r)) < 0)
			return rc;
		if (r->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (!yio_is_scalar(r))
			return yio_fail(r, "setting names must be plain text");
		snprintf(key, sizeof(key), "%s", yio_scalar(r));
		if (strlen(yio_scalar(r)) >= sizeof(key) || !settings_find_def(key))
			return yio_fail(r, "unknown setting \"%.*s\"", 100, yio_scalar(r));
		if (settings_find(s, key))
			return yio_fail(r, "%s is set twice", key);

		if ((rc = yio_next(r)) < 0)
			return rc;
		if (!yio_is_scalar(r))
			return yio_fail(r, "the value of %s must be plain text, not a list or mapping", key);
		if (settings_check(key, yio_scalar(r), &stored, msg, sizeof(msg)) < 0)
			return yio_fail(r, "%s", msg);
		if ((rc = settings_store(s, key, stored)) < 0)
			return yio_fail(r, "out of memory");
	}
	return yio_end(r);
}

int settings_load_err(const char *path, struct settings *s, char *err, size_t errlen)
{
	struct yio_reader reader;
	char *text;
	size_t len;
	int rc;

	s->v = NULL;
	s->n = 0;
	rc = read_file(path, SETTINGS_FILE_MAX, &text, &len);
	if (rc == PROTO_E_NOT_FOUND)
		return 0;
	if (rc == PROTO_E_INVALID_ARGUMENT) {
		snprintf(err, errlen, "%s: the file is larger than %u bytes", path, SETTINGS_FILE_MAX);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot read: %m", path);
		return rc;
	}
	rc = yio_reader_open(&reader, text, len, path, err, errlen);
	if (rc < 0)
		goto out_free_text;
	rc = settings_parse(&reader, s);
	yio_reader_close(&reader);
	if (rc < 0)
		settings_free(s);
out_free_text:
	free(text);
	return rc;
}

int settings_load(const char *path, struct settings *s)
{
	char err[768];
	int rc = settings_load_err(path, s, err, sizeof(err));

	if (rc < 0)
		vlog(LOG_ERROR_, "%s", err);
	return rc;
}

int settings_save(const char *path, const struct settings *s)
{
	struct yio_writer w;
	const char *data;
	size_t len;
	int rc;

	rc = yio_writer_open(&w);
	if (rc < 0)
		goto out_close;
	yio_map_start(&w);
	for (size_t i = 0; i < s->n; i++) {
		yio_plain(&w, s->v[i].key);
		yio_string(&w, s->v[i].value);
	}
	yio_map_end(&w);
	rc = yio_writer_finish(&w, &data, &len);
	if (rc < 0)
		goto out_close;
	rc = atomic_write_file(path, data, len, 0600);
out_close:
	yio_writer_close(&w);
	return rc;
}
