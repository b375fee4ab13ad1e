/* vmctl launch: create and start an instance. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vmproto/proto.h>

#include "vmcommon.h"
#include "vmctl.h"

#define LAUNCH_DEFAULT_IMAGE "lts"
#define LAUNCH_DEFAULT_MEMORY "1G"
#define LAUNCH_DEFAULT_DISK "5G"
#define LAUNCH_DEFAULT_TIMEOUT 300
#define LAUNCH_MAX_CPUS 1024

static int launch_exec(const struct cmd_entry *self, struct cmd_args *a);

static const struct cmd_option launch_options[] = {
	{ "name", 'n', "NAME", 0,
	  "Name for the instance: 1-63 lower-case letters, digits and hyphens, starting with a "
	  "letter. Default: a generated name." },
	{ "cpus", 'c', "NUMBER", 0, "Number of virtual CPUs. Default: 1." },
	{ "memory", 'm', "SIZE", 0,
	  "Memory, with a K, M, G or T suffix (powers of 1024). Default: 1G, minimum: 512M." },
	{ "disk", 'd', "SIZE", 0, "Disk size, with a K, M, G or T suffix. Default: 5G, minimum: 1G." },
	{ "cloud-init", 0, "FILE", 0,
	  "cloud-init user-data file (YAML) for the instance. It is checked here before "
	  "anything is created." },
	{ "timeout", 0, "SECONDS", 0,
	  "Give up waiting after this many seconds (default 300). An instance that is still "
	  "starting is kept, not deleted, and vmctl exits with status 5." },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct cmd_argument launch_arguments[] = {
	{ "IMAGE",
	  "What to run: a release alias (\"24.04\", \"lts\", \"release:noble\"), a local disk image "
	  "(\"/path/disk.qcow2\", \"./disk.img\", \"file:///path/disk.img\"; a relative path must "
	  "contain a '/') or an http(s) URL. Default: lts." },
	{ NULL, NULL },
};

const struct cmd_entry cmd_launch_entry = {
	.name = "launch",
	.usage = "[options] [IMAGE]",
	.summary = "Create and start a new instance.",
	.help = "Downloads the image if it is not cached yet (with a progress bar on a "
		"terminal), creates the instance's disk and cloud-init seed, starts it and waits "
		"until it can be reached over SSH. Prints \"Launched: NAME\" when it is ready.\n\n"
		"    vmctl launch --name web --cpus 2 --memory 2G 24.04\n"
		"    vmctl launch --cloud-init user-data.yaml /srv/images/debian.qcow2",
	.options = launch_options,
	.arguments = launch_arguments,
	.min_args = 0,
	.max_args = 1,
	.exec = launch_exec,
};

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

static int launch_exec(const struct cmd_entry *self, struct cmd_args *a)
{
	const char *name = args_get(a, "name");
	const char *image = a->argc > 0 ? a->argv[0] : LAUNCH_DEFAULT_IMAGE;
	const char *memory_text = args_get(a, "memory"), *disk_text = args_get(a, "disk");
	const char *cloud_init_path = args_get(a, "cloud-init");
	uint64_t cpus = 1, memory, disk, timeout = LAUNCH_DEFAULT_TIMEOUT;
	char *cloud_init = NULL;
	char err[512], image_buf[PATH_MAX + 16];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct cli_reply r;
	int rc;

	if (name != NULL && validate_instance_name(name, err, sizeof(err)) < 0)
		return cmd_error(EXIT_USAGE, "%s", err);
	if (image[0] == '\0')
		return cmd_error(EXIT_USAGE, "the image name is empty");
	rc = launch_image(image, image_buf, sizeof(image_buf));
	if (rc != EXIT_OK)
		return rc;
	image = image_buf;
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
	if (cloud_init_path != NULL) {
		if (launch_read_file(cloud_init_path, &cloud_init, err, sizeof(err)) < 0)
			return cmd_error(EXIT_USAGE, "%s", err);
		if (cloudinit_validate(cloud_init, err, sizeof(err)) < 0) {
			free(cloud_init);
			return cmd_error(EXIT_USAGE, "cloud-init file '%s': %s", cloud_init_path,
					 err);
		}
	}

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 5 + (name != NULL) + (cloud_init != NULL));
	proto_pack_kv_str(&pk, "image", image);
	if (name != NULL)
		proto_pack_kv_str(&pk, "name", name);
	proto_pack_kv_uint(&pk, "cpus", cpus);
	proto_pack_kv_uint(&pk, "memory", memory);
	proto_pack_kv_uint(&pk, "disk", disk);
	if (cloud_init != NULL)
		proto_pack_kv_str(&pk, "cloud_init", cloud_init);
	proto_pack_kv_uint(&pk, "timeout", timeout);
	free(cloud_init);

	/* The broker keeps the deadline (it knows what is still running); ours
	 * is only a backstop against a broker that never answers. */
	rc = cli_request("launch", &sb, (double)timeout + CLI_BACKSTOP, &r);
	msgpack_sbuffer_destroy(&sb);
	if (rc == EXIT_OK) {
		char launched[INSTANCE_NAME_MAX + 1] = "";

		proto_get_str(r.result, "name", launched, sizeof(launched));
		printf("Launched: %s\n", launched[0] != '\0' ? launched : (name != NULL ? name : "?"));
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
