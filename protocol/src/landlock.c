/* File-system confinement with Landlock (vmh.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmproto/vmh.h"

/* Rights newer than some distributions' kernel headers (landlock(7)). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

/* The access rights each ABI version knows (landlock(7)). */
static __u64 handled_for(int abi)
{
	__u64 all = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
		    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
		    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
		    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
		    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
		    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		    LANDLOCK_ACCESS_FS_MAKE_SYM;

	if (abi >= 2)
		all |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		all |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return all;
}

/* What a rule's access bits allow, within what the kernel handles. */
static __u64 allowed_for(unsigned access, bool is_dir, __u64 handled)
{
	__u64 files = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
		      LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
		      LANDLOCK_ACCESS_FS_IOCTL_DEV;
	__u64 a = 0;

	if (access & VMH_LANDLOCK_READ)
		a |= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
	if (access & VMH_LANDLOCK_EXEC)
		a |= LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |
		     LANDLOCK_ACCESS_FS_READ_DIR;
	if (access & VMH_LANDLOCK_WRITE)
		a |= handled & ~(__u64)(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |
				       LANDLOCK_ACCESS_FS_READ_DIR);
	a &= handled;
	/* A rule on a file takes the rights of files only. */
	return is_dir ? a : a & files;
}

int vmh_landlock_abi(const char **why)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

	if (abi > 0)
		return (int)abi;
	if (why)
		*why = errno == EOPNOTSUPP ? "Landlock is disabled in this kernel"
					   : "this kernel has no Landlock";
	return 0;
}

int vmh_landlock_prepare(const struct vmh_landlock_rule *rules, size_t n, char *why, size_t whylen)
{
	const char *none = "";
	int abi = vmh_landlock_abi(&none);
	struct landlock_ruleset_attr attr = { 0 };
	int fd;

	if (abi <= 0) {
		snprintf(why, whylen, "%s", none);
		return -1;
	}
	attr.handled_access_fs = handled_for(abi);
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd < 0) {
		snprintf(why, whylen, "cannot make a Landlock ruleset: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct landlock_path_beneath_attr rule = { 0 };
		struct stat st;
		int pfd = open(rules[i].path, O_PATH | O_CLOEXEC);

		if (pfd < 0) {
			if (errno == ENOENT && rules[i].optional)
				continue;
			snprintf(why, whylen, "%s: %s", rules[i].path, strerror(errno));
			goto fail;
		}
		if (fstat(pfd, &st) < 0) {
			snprintf(why, whylen, "%s: %s", rules[i].path, strerror(errno));
			close(pfd);
			goto fail;
		}
		rule.parent_fd = pfd;
		rule.allowed_access = allowed_for(rules[i].access, S_ISDIR(st.st_mode),
						  attr.handled_access_fs);
		if (rule.allowed_access &&
		    syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0) {
			snprintf(why, whylen, "Landlock rule for %s: %s", rules[i].path,
				 strerror(errno));
			close(pfd);
			goto fail;
		}
		close(pfd);
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int vmh_landlock_enforce(int ruleset_fd)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return (int)syscall(SYS_landlock_restrict_self, ruleset_fd, 0) < 0 ? -1 : 0;
}
