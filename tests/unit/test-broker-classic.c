/* The guest's half of a classic mount (core/vmctld/classic-script.c). */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "broker.h"

Test(classic, script_mounts_the_source_in_slave_mode_at_the_target)
{
	char *s = classic_guest_script("/home/dev/src", "/home/ubuntu/src", "1000:1000,0:0", NULL);

	cr_assert_not_null(s);
	cr_assert_not_null(strstr(s, "exec sudo sshfs ':/home/dev/src' \"$t\" -o slave,"), "%s", s);
	cr_assert_not_null(strstr(s, "t='/home/ubuntu/src'"), "%s", s);
	cr_assert_not_null(strstr(s, "idmap=file"), "%s", s);
	cr_assert_not_null(strstr(s, "for p in 1000:1000 0:0; do"), "%s", s);
	cr_assert_not_null(strstr(s, "echo " CLASSIC_MOUNTED_MARK), "%s", s);
	/* Nothing but sshfs may write to stdout: it is the SFTP channel. */
	cr_assert_eq(strncmp(s, "exec 3>&1 1>&2\n", 15), 0, "%s", s);
	free(s);
}

Test(classic, a_guest_without_sshfs_is_told_how_to_install_it)
{
	char buf[600];

	classic_describe_exit(CLASSIC_EXIT_NO_SSHFS << 8, "", buf, sizeof(buf));
	cr_assert_not_null(strstr(buf, "has no sshfs"), "%s", buf);
	cr_assert_not_null(strstr(buf, "apt install sshfs"), "%s", buf);
}

Test(classic, other_ends_quote_the_last_line_the_guest_wrote)
{
	char buf[600];

	classic_describe_exit(1 << 8, "first\nread: Connection reset by peer\n", buf, sizeof(buf));
	cr_assert_str_eq(buf, "sshfs in the guest ended (ssh exited with status 1): read: Connection "
			 "reset by peer");
}
