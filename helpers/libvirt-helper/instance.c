/* The disk overlay every driver of the qemu scope shares. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lvh.h"

extern char **environ;

int inst_overlay_path(const struct vmh_instance *inst, char *buf, size_t len)
{
	return vmh_instance_file(inst, PROTO_FILE_DISK, buf, len);
}

/* Run argv with stderr (and stdout too if want_stdout) captured into out;
 * 0 if it exited 0. */
static int inst_run(char *const argv[], char *out, size_t outlen, bool want_stdout)
{
	posix_spawn_file_actions_t fa;
	int pipefd[2], status, rc = 0;
	size_t used = 0;
	pid_t pid;

	out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		snprintf(out, outlen, "pipe: %s", strerror(errno));
		return PROTO_E_IO;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	if (want_stdout)
		posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (rc != 0) {
		snprintf(out, outlen, "cannot run %s: %s", argv[0], strerror(rc));
		close(pipefd[0]);
		return PROTO_E_DRIVER;
	}
	for (;;) {
		char tmp[512];
		ssize_t n = read(pipefd[0], tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t take = (size_t)n < outlen - 1 - used ? (size_t)n : outlen - 1 - used;
		memcpy(out + used, tmp, take);
		used += take;
		out[used] = '\0';
	}
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(out, outlen, "waitpid: %s", strerror(errno));
			return PROTO_E_INTERNAL;
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* Keep the first line: qemu-img says what was wrong there. */
		char *nl = strchr(out, '\n');
		if (nl)
			*nl = '\0';
		return PROTO_E_DRIVER;
	}
	return 0;
}

/* The virtual size of the base image, from `qemu-img info --output=json`. */
static int inst_base_size(const struct vmh_instance *inst, uint64_t *size, char *err,
			  size_t errlen)
{
	char *argv[] = {"qemu-img", "info", "--output=json", "-U", "-f", inst->image.format,
			inst->image.disk, NULL};
	char out[8192];
	const char *key = "\"virtual-size\":";
	int rc = inst_run(argv, out, sizeof(out), true);
	char *p;

	if (rc < 0) {
		snprintf(err, errlen, "cannot read the image %s: %s", inst->image.disk,
			 out[0] ? out : "qemu-img failed");
		return rc;
	}
	p = strstr(out, key);
	if (!p || sscanf(p + strlen(key), " %" SCNu64, size) != 1 || *size == 0) {
		snprintf(err, errlen, "qemu-img did not report the size of %s", inst->image.disk);
		return PROTO_E_DRIVER;
	}
	return 0;
}

int inst_overlay_ensure(const struct vmh_instance *inst, char *err, size_t errlen)
{
	char overlay[PATH_MAX + 16], size[32], out[512];
	uint64_t base_size;
	struct stat st;
	int rc;

	if (inst_overlay_path(inst, overlay, sizeof(overlay)) < 0) {
		snprintf(err, errlen, "the instance folder path of %s is too long", inst->name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (stat(overlay, &st) == 0)
		return 0;
	if (!inst->image.disk) {
		snprintf(err, errlen, "%s has no disk yet and its instance map names no base image",
			 inst->name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (stat(inst->image.disk, &st) < 0) {
		snprintf(err, errlen, "the base image of %s, %s, is not readable: %s", inst->name,
			 inst->image.disk, strerror(errno));
		return PROTO_E_NOT_FOUND;
	}
	if (mkdir(inst->dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create the instance folder %s: %s", inst->dir,
			 strerror(errno));
		return PROTO_E_IO;
	}
	rc = inst_base_size(inst, &base_size, err, errlen);
	if (rc < 0)
		return rc;
	/* As the qemu driver does: never smaller than the image, or the guest's
	 * file system would be cut short. */
	snprintf(size, sizeof(size), "%" PRIu64, inst->disk > base_size ? inst->disk : base_size);
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", inst->image.format,
			"-b", inst->image.disk, overlay, size, NULL};
	rc = inst_run(argv, out, sizeof(out), false);
	if (rc < 0) {
		snprintf(err, errlen, "cannot create the disk of %s: %s", inst->name,
			 out[0] ? out : "qemu-img failed");
		unlink(overlay);
	}
	return rc;
}

int inst_overlay_resize(const struct vmh_instance *inst, uint64_t size, char *err, size_t errlen)
{
	char overlay[PATH_MAX + 16], text[32], out[512];
	struct stat st;
	int rc;

	if (inst_overlay_path(inst, overlay, sizeof(overlay)) < 0 || stat(overlay, &st) < 0) {
		snprintf(err, errlen, "%s has no disk %s/%s", inst->name, inst->dir,
			 PROTO_FILE_DISK);
		return PROTO_E_NOT_FOUND;
	}
	snprintf(text, sizeof(text), "%" PRIu64, size);
	/* Without --shrink, qemu-img refuses to make the disk smaller. */
	char *argv[] = {"qemu-img", "resize", "-q", "-f", "qcow2", overlay, text, NULL};
	rc = inst_run(argv, out, sizeof(out), false);
	if (rc < 0 && strstr(out, "--shrink")) {
		snprintf(err, errlen, "the disk of %s can only grow, not shrink", inst->name);
		return PROTO_E_INVALID_ARGUMENT;
	}
	if (rc < 0)
		snprintf(err, errlen, "qemu-img could not resize the disk of %s: %s", inst->name,
			 out[0] ? out : "failed");
	else
		vmh_log(VMH_INFO, "%s: disk resized to %s bytes", inst->name, text);
	return rc;
}

int inst_qemu_suspend_discard(const struct vmh_instance *inst, char *err, size_t errlen)
{
	char overlay[PATH_MAX + 16], out[512];
	int rc;

	if (inst_overlay_path(inst, overlay, sizeof(overlay)) < 0)
		return PROTO_E_INVALID_ARGUMENT;
	/* The qemu driver keeps a suspended VM's RAM in this internal snapshot;
	 * without its marker it is dead weight in the disk. */
	char *argv[] = {"qemu-img", "snapshot", "-d", PROTO_SUSPEND_TAG, overlay, NULL};
	rc = inst_run(argv, out, sizeof(out), false);
	if (rc < 0)
		snprintf(err, errlen, "%s", out[0] ? out : "qemu-img snapshot -d failed");
	return rc;
}
