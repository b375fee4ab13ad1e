/* vmctl launch: create and start an instance. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define LAUNCH_DEFAULT_MEMORY "1G"
#define LAUNCH_DEFAULT_DISK "5G"
#define LAUNCH_DEFAULT_TIMEOUT 300
#define LAUNCH_MAX_CPUS 1024
#define LAUNCH_NETWORK_NAME_MAX 15 /* a host interface name */

/* One --network, as the broker's launch takes it. */
struct launch_network {
	char name[LAUNCH_NETWORK_NAME_MAX + 1];
	char mode[8];
	char mac[18];
};

static int launch_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option launch_options[] = {
	{ "name", 'n', "NAME", 0,
	  "Name for the instance: 1-63 lower-case letters, digits and hyphens, starting with a "
	  "letter. Default: a generated name." },
	{ "cpus", 'c', "NUMBER", 0, "Number of virtual CPUs. Default: 1." },
	{ "memory", 'm', "SIZE", 0,
	  "Memory, with a K, M, G or T suffix (powers of 1024). Default: 1G, minimum: 512M." },
	{ "disk", 'd', "SIZE", 0, "Disk size, with a K, M, G or T suffix. Default: 5G, minimum: 1G." },
	{ "cloud-init", 0, "FILE|-|URL", 0,
	  "cloud-init user data (YAML) for the instance: a file, \"-\" for standard input, or "
	  "an http:// or https:// URL, which the broker fetches (at most 1 MiB). It is checked "
	  "before anything is created." },
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting after this many seconds (default 300). An instance that is still "
	  "starting is kept, not deleted, and vmctl exits with status 5." },
	{ "network", 0, "SPEC", OPT_MULTI,
	  "Add a network interface attached to a host network (may be repeated). SPEC is a "
	  "network name, or name=NAME[,mode=auto|manual][,mac=MAC] with the keys in any order. "
	  "mode auto (the default) has the instance configure it by DHCP; manual leaves it "
	  "unconfigured. Without mac=, a MAC address is generated. \"bridged\" names the "
	  "network of the setting local.bridged-network; vmctl networks lists the networks." },
	{ "bridged", 0, NULL, 0,
	  "Add a network interface on the network named by the setting local.bridged-network "
	  "(the same as --network bridged)." },
	{ "mount", 0, "SOURCE[:TARGET]", OPT_MULTI,
	  "Share the host folder SOURCE at TARGET in the instance (default: the same path), "
	  "mounted once the instance is ready; may be repeated. The host user is the guest's "
	  "user ubuntu (uid and gid 1000); use vmctl mount for other id maps." },
	{ "mount-type", 0, "TYPE", 0,
	  "The type of every --mount: classic (the default: sshfs over SSH, any driver) or "
	  "native (the driver shares the folder itself, e.g. 9p with qemu)." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument launch_arguments[] = {
	{ "IMAGE",
	  "What to run: a release alias (\"24.04\", \"lts\", \"release:noble\"), a local disk image "
	  "(\"/path/disk.qcow2\", \"./disk.img\", \"file:///path/disk.img\"; a relative path must "
	  "contain a '/') or an http(s) URL. The disk must be qcow2 or a raw image with a "
	  "partition table or a file system; any other file is refused before anything is "
	  "created. Default: the setting local.image.default (lts unless changed)." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_launch_entry = {
	.name = "launch",
	.usage = "[options] [IMAGE]",
	.summary = "Create and start a new instance.",
	.help = "Downloads the image if it is not cached yet (with a progress bar on a "
		"terminal), creates the instance's disk and cloud-init seed, starts it and waits "
		"until it can be reached over SSH. Prints \"Launched: NAME\" when it is ready. "
		"If the VM stops before that, launch fails at once, naming the serial console "
		"log, and keeps the instance; 'vmctl stop --force' or 'vmctl delete' cancels a "
		"launch in progress.\n\n"
		"    vmctl launch --name web --cpus 2 --memory 2G 24.04\n"
		"    vmctl launch --cloud-init user-data.yaml /srv/images/debian.qcow2\n"
		"    vmctl launch --cloud-init - 24.04 < user-data.yaml\n"
		"    vmctl launch --cloud-init https://example.com/user-data.yaml 24.04\n"
		"    vmctl launch --network br0 --network name=br1,mode=manual 24.04\n"
		"    vmctl launch --mount ~/src:/home/ubuntu/src 24.04",
	.options = launch_options,
	.arguments = launch_arguments,
	.min_args = 0,
	.max_args = 1,
	.exec = launch_exec,
};

/* User data from standard input, at most PROTO_MAX_STRING - 1 bytes. */
static int launch_read_stdin(char **out, char *err, size_t errlen)
{
	size_t len = 0, cap = 65536;
	char *text = malloc(cap);

	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return PROTO_E_NOMEM;
	}
	for (;;) {
		size_t got;

		if (len + 1 == cap) {
			char *grown;

			if (cap >= PROTO_MAX_STRING) {
				snprintf(err, errlen, "the cloud-init user data on standard input is "
					 "too large (at most %d bytes)", PROTO_MAX_STRING - 1);
				goto out_free;
			}
			grown = realloc(text, cap * 2);
			if (grown == NULL) {
				snprintf(err, errlen, "out of memory");
				goto out_free;
			}
			text = grown;
			cap *= 2;
		}
		got = fread(text + len, 1, cap - 1 - len, stdin);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(stdin)) {
		snprintf(err, errlen, "cannot read cloud-init user data from standard input: %s",
			 strerror(errno));
		goto out_free;
	}
	text[len] = '\0';
	if (strlen(text) != len) {
		snprintf(err, errlen, "the cloud-init user data on standard input is not text (it "
			 "contains a NUL byte)");
		goto out_free;
	}
	*out = text;
	return 0;

out_free:
	free(text);
	return PROTO_E_INVALID_ARGUMENT;
}

static bool launch_is_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* Read the user-data file, with the reason for the user when it cannot be. */
static int launch_read_file(const char *path, char **out, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t got;

	if (f == NULL) {
		snprintf(err, errlen, "cannot read cloud-init file '%s': %s", path, strerror(errno));
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "cannot read cloud-init file '%s': not a regular file", path);
		goto out_close;
	}
	if (st.st_size >= PROTO_MAX_STRING) {
		snprintf(err, errlen, "cloud-init file '%s' is too large (at most %d bytes)", path,
			 PROTO_MAX_STRING - 1);
		goto out_close;
	}
	text = malloc((size_t)st.st_size + 1);
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out_close;
	}
	got = fread(text, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read cloud-init file '%s': %s", path, strerror(errno));
		free(text);
		text = NULL;
		goto out_close;
	}
	text[got] = '\0';
	if (strlen(text) != got) {
		snprintf(err, errlen, "cloud-init file '%s' is not text (it contains a NUL byte)",
			 path);
		free(text);
		text = NULL;
		goto out_close;
	}
	*out = text;
out_close:
	fclose(f);
	return text != NULL ? 0 : PROTO_E_INVALID_ARGUMENT;
}

/*
 * A local image is opened by the broker, whose working folder is not ours:
 * send it an absolute path, and say now, not after a round trip, when the
 * file is missing. Aliases and URLs go as they are.
 */
static int launch_image(const char *image, char *out, size_t len)
{
	const char *path = image;
	char resolved[PATH_MAX];
	struct stat st;

	if (strncmp(image, "file://", 7) == 0)
		path = image + 7;
	else if (strstr(image, "://") != NULL || strchr(image, '/') == NULL)
		return snprintf(out, len, "%s", image) < (int)len
			       ? EXIT_OK
			       : cmd_error(EXIT_USAGE, "the image name is too long");
	if (realpath(path, resolved) == NULL)
		return cmd_error(EXIT_USAGE, "cannot use image '%s': %s", image, strerror(errno));
	if (stat(resolved, &st) < 0 || !S_ISREG(st.st_mode))
		return cmd_error(EXIT_USAGE, "cannot use image '%s': not a regular file", image);
	if (path != image)
		return snprintf(out, len, "file://%s", resolved) < (int)len
			       ? EXIT_OK
			       : cmd_error(EXIT_USAGE, "the image path is too long");
	snprintf(out, len, "%s", resolved);
	return EXIT_OK;
}

static int launch_size(const char *what, const char *text, uint64_t min, uint64_t *out)
{
	char err[256], minbuf[32];

	if (parse_size(text, out, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "--%s: %s", what, err);
	if (*out < min) {
		format_size(min, minbuf, sizeof(minbuf));
		return cmd_error(EXIT_USAGE, "%s size '%s' is below the minimum of %s", what, text,
				 minbuf);
	}
	return EXIT_OK;
}

/* Six hex pairs separated by ':', a unicast address (first byte even). */
static bool launch_mac_ok(const char *mac)
{
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? mac[i] != ':' : !isxdigit((unsigned char)mac[i]))
			return false;
	return mac[17] == '\0' && (strtoul(mac, NULL, 16) & 1) == 0;
}

/* --network SPEC: "NAME" or "name=N[,mode=auto|manual][,mac=M]", keys in any order. */
static int launch_parse_network(const char *spec, struct launch_network *net)
{
	char copy[256], *save = NULL;
	bool seen_mode = false, seen_mac = false;

	memset(net, 0, sizeof(*net));
	snprintf(net->mode, sizeof(net->mode), "auto");
	if (strlen(spec) >= sizeof(copy))
		return cmd_error(EXIT_USAGE, "--network '%.40s...': too long", spec);
	if (strchr(spec, '=') == NULL && strchr(spec, ',') == NULL) {
		if (spec[0] == '\0')
			return cmd_error(EXIT_USAGE, "--network needs a network name (see vmctl networks)");
		if (strlen(spec) > LAUNCH_NETWORK_NAME_MAX)
			return cmd_error(EXIT_USAGE, "--network '%s': a network name has at most %d "
					 "characters", spec, LAUNCH_NETWORK_NAME_MAX);
		snprintf(net->name, sizeof(net->name), "%s", spec);
		return EXIT_OK;
	}
	snprintf(copy, sizeof(copy), "%s", spec);
	for (char *part = strtok_r(copy, ",", &save); part != NULL; part = strtok_r(NULL, ",", &save)) {
		char *value = strchr(part, '=');

		if (value == NULL)
			return cmd_error(EXIT_USAGE, "--network '%s': '%s' is not KEY=VALUE (keys: name, "
					 "mode, mac)", spec, part);
		*value++ = '\0';
		if (value[0] == '\0')
			return cmd_error(EXIT_USAGE, "--network '%s': %s has no value", spec, part);
		if (strcmp(part, "name") == 0) {
			if (net->name[0] != '\0')
				return cmd_error(EXIT_USAGE, "--network '%s': name is given twice", spec);
			if (strlen(value) > LAUNCH_NETWORK_NAME_MAX)
				return cmd_error(EXIT_USAGE, "--network '%s': a network name has at most "
						 "%d characters", spec, LAUNCH_NETWORK_NAME_MAX);
			snprintf(net->name, sizeof(net->name), "%s", value);
		} else if (strcmp(part, "mode") == 0) {
			if (seen_mode)
				return cmd_error(EXIT_USAGE, "--network '%s': mode is given twice", spec);
			seen_mode = true;
			if (strcmp(value, "auto") != 0 && strcmp(value, "manual") != 0)
				return cmd_error(EXIT_USAGE, "--network '%s': mode must be auto or manual, "
						 "not '%s'", spec, value);
			snprintf(net->mode, sizeof(net->mode), "%s", value);
		} else if (strcmp(part, "mac") == 0) {
			if (seen_mac)
				return cmd_error(EXIT_USAGE, "--network '%s': mac is given twice", spec);
			seen_mac = true;
			if (!launch_mac_ok(value))
				return cmd_error(EXIT_USAGE, "--network '%s': '%s' is not a unicast MAC "
						 "address like 52:54:00:12:34:56", spec, value);
			snprintf(net->mac, sizeof(net->mac), "%s", value);
		} else {
			return cmd_error(EXIT_USAGE, "--network '%s': unknown key '%s' (keys: name, "
					 "mode, mac)", spec, part);
		}
	}
	if (net->name[0] == '\0')
		return cmd_error(EXIT_USAGE, "--network '%s': name= is missing (the host network to "
				 "attach to; see vmctl networks)", spec);
	return EXIT_OK;
}

static int launch_parse_networks(struct cmd_args *a, struct launch_network **out, size_t *n)
{
	char **specs = args_values(a, "network", n);

	*out = NULL;
	if (*n == 0)
		return EXIT_OK;
	*out = calloc(*n, sizeof(**out));
	if (*out == NULL)
		return cmd_error(EXIT_FAILED, "out of memory");
	for (size_t i = 0; i < *n; i++) {
		int rc = launch_parse_network(specs[i], &(*out)[i]);

		if (rc != EXIT_OK) {
			free(*out);
			*out = NULL;
			return rc;
		}
	}
	return EXIT_OK;
}

static void launch_pack_networks(msgpack_packer *pk, const struct launch_network *v, size_t n)
{
	proto_pack_str(pk, "networks");
	msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++) {
		msgpack_pack_map(pk, v[i].mac[0] != '\0' ? 3 : 2);
		proto_pack_kv_str(pk, "name", v[i].name);
		proto_pack_kv_str(pk, "mode", v[i].mode);
		if (v[i].mac[0] != '\0')
			proto_pack_kv_str(pk, "mac", v[i].mac);
	}
}

/* --mount SOURCE[:TARGET]: TARGET starts after the last ':' followed by '/'. */
static int launch_pack_mounts(msgpack_packer *pk, struct cmd_args *a)
{
	const char *type = args_get(a, "mount-type") != NULL ? args_get(a, "mount-type") : "classic";
	size_t n;
	char **specs = args_values(a, "mount", &n);

	proto_pack_str(pk, "mounts");
	msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++) {
		const char *spec = specs[i], *colon = NULL;
		char part[PATH_MAX], source[PATH_MAX];

		for (const char *c = spec; *c; c++)
			if (c[0] == ':' && c[1] == '/')
				colon = c;
		snprintf(part, sizeof(part), "%.*s", (int)(colon ? (size_t)(colon - spec) : strlen(spec)),
			 spec);
		if (realpath(part, source) == NULL)
			return cmd_error(EXIT_USAGE, "--mount '%s': cannot use '%s': %s", spec, part,
					 strerror(errno));
		msgpack_pack_map(pk, 3);
		proto_pack_kv_str(pk, "source", source);
		proto_pack_kv_str(pk, "target", colon ? colon + 1 : source);
		proto_pack_kv_str(pk, "type", type);
	}
	return EXIT_OK;
}

static int launch_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *name = args_get(a, "name");
	const char *image = a->argc > 0 ? a->argv[0] : NULL; /* NULL: local.image.default */
	const char *memory_text = args_get(a, "memory"), *disk_text = args_get(a, "disk");
	const char *cloud_init_path = args_get(a, "cloud-init"), *cloud_init_url = NULL;
	uint64_t cpus = 1, memory, disk, timeout = LAUNCH_DEFAULT_TIMEOUT;
	bool bridged = args_has(a, "bridged");
	struct launch_network *networks = NULL;
	size_t n_networks = 0, n_mounts = 0;
	char *cloud_init = NULL;
	char err[512], image_buf[PATH_MAX + 16];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (name != NULL && validate_instance_name(name, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (image != NULL && image[0] == '\0')
		return cmd_error(EXIT_USAGE, "the image name is empty");
	if (image != NULL) {
		rc = launch_image(image, image_buf, sizeof(image_buf));
		if (rc != EXIT_OK)
			return rc;
		image = image_buf;
	}
	if (args_get(a, "cpus") != NULL &&
	    args_parse_uint("--cpus", args_get(a, "cpus"), 1, LAUNCH_MAX_CPUS, &cpus, err,
			    sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	rc = launch_size("memory", memory_text != NULL ? memory_text : LAUNCH_DEFAULT_MEMORY,
			 MIN_MEMORY, &memory);
	if (rc != EXIT_OK)
		return rc;
	rc = launch_size("disk", disk_text != NULL ? disk_text : LAUNCH_DEFAULT_DISK, MIN_DISK,
			 &disk);
	if (rc != EXIT_OK)
		return rc;
	if (args_get(a, "timeout") != NULL &&
	    args_parse_uint("--timeout", args_get(a, "timeout"), 1, 7 * 86400, &timeout, err,
			    sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (args_get(a, "mount-type") != NULL && strcmp(args_get(a, "mount-type"), "classic") != 0 &&
	    strcmp(args_get(a, "mount-type"), "native") != 0)
		return cmd_usage_error(self, "unknown mount type '%s' (use classic or native)",
				       args_get(a, "mount-type"));
	args_values(a, "mount", &n_mounts);
	rc = launch_parse_networks(a, &networks, &n_networks);
	if (rc != EXIT_OK)
		return rc;
	if (cloud_init_path != NULL && launch_is_url(cloud_init_path)) {
		cloud_init_url = cloud_init_path;
	} else if (cloud_init_path != NULL && strstr(cloud_init_path, "://") != NULL) {
		free(networks);
		return cmd_error(EXIT_USAGE, "--cloud-init '%s': only http:// and https:// URLs "
				 "can be fetched (or give a file, or - for standard input)",
				 cloud_init_path);
	} else if (cloud_init_path != NULL) {
		if ((strcmp(cloud_init_path, "-") == 0
			     ? launch_read_stdin(&cloud_init, err, sizeof(err))
			     : launch_read_file(cloud_init_path, &cloud_init, err, sizeof(err))) < 0) {
			free(networks);
			return cmd_error(EXIT_USAGE, "%s", err);
		}
		if (cloudinit_validate(cloud_init, err, sizeof(err)) < 0) {
			free(cloud_init);
			free(networks);
			if (strcmp(cloud_init_path, "-") == 0)
				return cmd_error(EXIT_USAGE, "cloud-init user data on standard input: %s",
						 err);
			return cmd_error(EXIT_USAGE, "cloud-init file '%s': %s", cloud_init_path,
					 err);
		}
	}

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 4 + (image != NULL) + (name != NULL) + (cloud_init != NULL) +
				 (cloud_init_url != NULL) + (n_networks > 0) + bridged + (n_mounts > 0));
	if (image != NULL)
		proto_pack_kv_str(&pk, "image", image);
	if (name != NULL)
		proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_uint(&pk, "cpus", cpus);
	proto_pack_kv_uint(&pk, "memory", memory);
	proto_pack_kv_uint(&pk, "disk", disk);
	if (cloud_init != NULL)
		proto_pack_kv_str(&pk, "cloud_init", cloud_init);
	if (cloud_init_url != NULL)
		proto_pack_kv_str(&pk, "cloud_init_url", cloud_init_url);
	if (n_networks > 0)
		launch_pack_networks(&pk, networks, n_networks);
	if (bridged)
		proto_pack_kv_bool(&pk, "bridged", true);
	proto_pack_kv_uint(&pk, "timeout", timeout);
	free(cloud_init);
	free(networks);
	if (n_mounts > 0 && (rc = launch_pack_mounts(&pk, a)) != EXIT_OK) {
		msgpack_sbuffer_destroy(&sb);
		return rc;
	}

	/* The broker keeps the deadline (it knows what is still running); ours
	 * is only a backstop against a broker that never answers. */
	rc = cli_request("launch", &sb, (double)timeout + CLI_BACKSTOP, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK) {
		char launched[INSTANCE_NAME_MAX + 1] = "";

		proto_get_str(r.result, "name", launched, sizeof(launched));
		printf("Launched: %s\n", launched[0] != '\0' ? launched : (name != NULL ? name : "?"));
		fflush(stdout);
		/* As Multipass: the primary instance gets the home folder. */
		if (launched[0] != '\0')
			primary_after_launch(launched);
	} else if (rc == EXIT_TIMEOUT) {
		if (name != NULL)
			fprintf(stderr,
				"vmctl: the instance '%s' was kept; see 'vmctl info %s', or remove it "
				"with 'vmctl delete --purge %s'\n",
				name, name, name);
		else
			fprintf(stderr, "vmctl: the instance was kept; see 'vmctl list'\n");
	}
	cli_reply_free(&r);
	return rc;
}
