/* Crash-safe writes and the small file-system helpers. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

static char tmpdir[] = "/tmp/vmctl-test-atomic-XXXXXX";
static char path[256];

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/state.yaml", tmpdir);
}

static void teardown(void)
{
	remove_tree(tmpdir);
}

TestSuite(atomic, .init = setup, .fini = teardown);

static char *slurp(const char *file)
{
	char *text = NULL;
	size_t len;

	cr_assert_eq(read_file(file, 64 << 20, &text, &len), 0, "cannot read %s", file);
	return text;
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

Test(atomic, write_creates_file_with_content_and_mode)
{
	struct stat st;
	char *text;

	cr_assert_eq(atomic_write_file(path, "hello\n", 6, 0640), 0);
	text = slurp(path);
	cr_assert_str_eq(text, "hello\n");
	free(text);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	cr_assert_eq(count_entries(tmpdir), 1, "a temporary file was left behind");
}

Test(atomic, write_replaces_existing_content)
{
	char *text;

	cr_assert_eq(atomic_write_file(path, "old content that is longer", 26, 0600), 0);
	cr_assert_eq(atomic_write_file(path, "new", 3, 0600), 0);
	text = slurp(path);
	cr_assert_str_eq(text, "new");
	free(text);
}

static void crash_now(const char *tmp_path)
{
	(void)tmp_path;
	_exit(0);
}

static char seen_tmp[512];
static char seen_tmp_text[16];

static void check_tmp_complete(const char *tmp_path)
{
	FILE *f = fopen(tmp_path, "r");

	snprintf(seen_tmp, sizeof(seen_tmp), "%s", tmp_path);
	if (f) {
		size_t n = fread(seen_tmp_text, 1, sizeof(seen_tmp_text) - 1, f);
		seen_tmp_text[n] = '\0';
		fclose(f);
	}
}

Test(atomic, crash_before_rename_leaves_the_old_file_whole)
{
	size_t big = 4 << 20;
	char *old_data = malloc(big), *new_data = malloc(big), *text;
	pid_t pid;
	int status;

	cr_assert(old_data && new_data);
	memset(old_data, 'o', big - 1);
	old_data[big - 1] = '\0';
	memset(new_data, 'n', big - 1);
	new_data[big - 1] = '\0';
	cr_assert_eq(atomic_write_file(path, old_data, big - 1, 0600), 0);

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		atomic_write_test_hook = crash_now;
		atomic_write_file(path, new_data, big - 1, 0600);
		_exit(3); /* not reached when the hook runs */
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the hook did not run");

	text = slurp(path);
	cr_assert_eq(strlen(text), big - 1);
	cr_assert_str_eq(text, old_data);
	free(text);

	cr_assert_eq(atomic_write_file(path, new_data, big - 1, 0600), 0);
	text = slurp(path);
	cr_assert_str_eq(text, new_data);
	free(text);
	free(old_data);
	free(new_data);
}

Test(atomic, hook_sees_a_complete_temp_file_beside_the_target)
{
	char *text;

	atomic_write_test_hook = check_tmp_complete;
	cr_assert_eq(atomic_write_file(path, "abc", 3, 0600), 0);
	atomic_write_test_hook = NULL;
	cr_assert(strncmp(seen_tmp, tmpdir, strlen(tmpdir)) == 0 && seen_tmp[strlen(tmpdir)] == '/',
		  "temp file \"%s\" is not beside the target", seen_tmp);
	cr_assert_str_eq(seen_tmp_text, "abc");
	cr_assert_eq(access(seen_tmp, F_OK), -1, "the temp file still exists after the rename");
	text = slurp(path);
	cr_assert_str_eq(text, "abc");
	free(text);
}

Test(atomic, failed_rename_removes_the_temp_file)
{
	char sub[300], inner[320];

	/* A non-empty folder in the way makes the final rename fail. */
	snprintf(sub, sizeof(sub), "%s/busy", tmpdir);
	snprintf(inner, sizeof(inner), "%s/x", sub);
	cr_assert_eq(mkdir_p(inner, 0700), 0);
	cr_assert_eq(atomic_write_file(sub, "data", 4, 0600), PROTO_E_IO);
	cr_assert_eq(count_entries(tmpdir), 1, "a temporary file was left behind");
}

Test(atomic, write_into_missing_folder_fails_cleanly)
{
	char missing[300];

	snprintf(missing, sizeof(missing), "%s/nope/file", tmpdir);
	cr_assert_eq(atomic_write_file(missing, "x", 1, 0600), PROTO_E_IO);
	cr_assert_eq(atomic_write_file("", "x", 1, 0600), PROTO_E_INVALID_ARGUMENT);
}

Test(atomic, mkdir_p_creates_nested_folders_and_accepts_existing)
{
	char deep[300];
	struct stat st;

	snprintf(deep, sizeof(deep), "%s/a/b//c/", tmpdir);
	cr_assert_eq(mkdir_p(deep, 0700), 0);
	cr_assert_eq(stat(deep, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_eq(mkdir_p(deep, 0700), 0);
}

Test(atomic, mkdir_p_fails_on_a_file_in_the_way)
{
	char under[300];

	cr_assert_eq(atomic_write_file(path, "x", 1, 0600), 0);
	snprintf(under, sizeof(under), "%s/sub", path);
	cr_assert_eq(mkdir_p(under, 0700), PROTO_E_IO);
	cr_assert_eq(mkdir_p(path, 0700), PROTO_E_IO);
}

Test(atomic, remove_tree_refuses_root_and_empty)
{
	cr_assert_eq(remove_tree("/"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(remove_tree("//"), PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(remove_tree(""), PROTO_E_INVALID_ARGUMENT);
}

Test(atomic, remove_tree_removes_everything_but_not_through_symlinks)
{
	char tree[300], deep[320], file[340], outside[300], outside_file[320], link[340];

	snprintf(tree, sizeof(tree), "%s/tree", tmpdir);
	snprintf(deep, sizeof(deep), "%s/a/b", tree);
	snprintf(file, sizeof(file), "%s/f", deep);
	snprintf(outside, sizeof(outside), "%s/outside", tmpdir);
	snprintf(outside_file, sizeof(outside_file), "%s/keep", outside);
	snprintf(link, sizeof(link), "%s/a/link", tree);
	cr_assert_eq(mkdir_p(deep, 0700), 0);
	cr_assert_eq(mkdir_p(outside, 0700), 0);
	cr_assert_eq(atomic_write_file(file, "x", 1, 0600), 0);
	cr_assert_eq(atomic_write_file(outside_file, "x", 1, 0600), 0);
	cr_assert_eq(symlink(outside, link), 0);

	cr_assert_eq(remove_tree(tree), 0);
	cr_assert_eq(access(tree, F_OK), -1);
	cr_assert_eq(access(outside_file, F_OK), 0, "removal followed a symlink");
	cr_assert_eq(remove_tree(tree), 0, "a missing tree is already removed");
}

/* A native mount left behind (bind of the user's folder inside an instance
 * folder, same device) must stop a purge, not be emptied by it. */
Test(atomic, remove_tree_removes_nothing_with_a_mount_inside)
{
	char tree[300], point[320], user[300], user_file[320];

	/* Our own mount namespace: the bind mount goes away with this process. */
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		cr_skip_test("needs root to make a bind mount (%s)", strerror(errno));
	snprintf(tree, sizeof(tree), "%s/tree", tmpdir);
	snprintf(point, sizeof(point), "%s/idmapped/0", tree);
	snprintf(user, sizeof(user), "%s/user", tmpdir);
	snprintf(user_file, sizeof(user_file), "%s/precious", user);
	cr_assert_eq(mkdir_p(point, 0700), 0);
	cr_assert_eq(mkdir_p(user, 0700), 0);
	cr_assert_eq(atomic_write_file(user_file, "x", 1, 0600), 0);
	cr_assert_eq(mount(user, point, NULL, MS_BIND, NULL), 0, "%s", strerror(errno));

	cr_assert_eq(remove_tree(tree), PROTO_E_INVALID_STATE);
	cr_assert_eq(access(user_file, F_OK), 0, "removal went through a bind mount");
	cr_assert_eq(access(point, F_OK), 0, "the tree was partly removed");

	cr_assert_eq(umount2(point, MNT_DETACH), 0);
	cr_assert_eq(remove_tree(tree), 0);
	cr_assert_eq(access(tree, F_OK), -1);
	cr_assert_eq(access(user_file, F_OK), 0);
}

Test(atomic, read_file_reads_whole_file_with_nul)
{
	char *text;
	size_t len;

	cr_assert_eq(atomic_write_file(path, "a\0b", 3, 0600), 0);
	cr_assert_eq(read_file(path, 3, &text, &len), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(text, "a\0b", 4), 0);
	free(text);
}

Test(atomic, read_file_refuses_more_than_max)
{
	char *text = (char *)1;

	cr_assert_eq(atomic_write_file(path, "abcd", 4, 0600), 0);
	cr_assert_eq(read_file(path, 3, &text, NULL), PROTO_E_INVALID_ARGUMENT);
	cr_assert_null(text);
}

Test(atomic, read_file_of_missing_file_is_not_found)
{
	char *text;

	cr_assert_eq(read_file(path, 100, &text, NULL), PROTO_E_NOT_FOUND);
	cr_assert_eq(read_file(tmpdir, 100, &text, NULL), PROTO_E_IO);
}

Test(atomic, read_file_reads_pipes_past_stat_size)
{
	char *text;
	size_t len;

	cr_assert_eq(read_file("/proc/self/status", 1 << 20, &text, &len), 0);
	cr_assert_gt(len, 0);
	cr_assert(strstr(text, "Name:"));
	free(text);
}
