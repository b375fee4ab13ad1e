/* The metadata of the LXD virtual-machine image a qcow2 disk becomes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "lxd.h"

#define SHA "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

TestSuite(lxd_vmimage, .timeout = 10);

Test(lxd_vmimage, metadata_yaml_has_what_lxd_reads)
{
	char buf[1024];
	int n = lxd_vm_metadata_yaml("x86_64", 1700000000, "vmctl: fast \"x\".qcow2", SHA, buf,
				     sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert_eq((size_t)n, strlen(buf));
	cr_expect_str_eq(buf, "architecture: x86_64\n"
			      "creation_date: 1700000000\n"
			      "properties:\n"
			      "  description: \"vmctl: fast \\\"x\\\".qcow2\"\n"
			      "  os: vmctl\n"
			      "  vmctl.sha256: \"" SHA "\"\n");
	cr_expect_eq(lxd_vm_metadata_yaml("x86_64", 1, "d", SHA, buf, 20), -1, "a cut one is refused");
}

Test(lxd_vmimage, description_stays_one_printable_line)
{
	char buf[1024];

	cr_assert_gt(lxd_vm_metadata_yaml("aarch64", 1, "a\nb\\c\x01", SHA, buf, sizeof(buf)), 0);
	cr_expect_not_null(strstr(buf, "  description: \"a?b\\\\c?\"\n"), "%s", buf);
}

/* What tar itself reads out of the archive. */
static char *tar_says(const unsigned char *tar, size_t len, const char *args)
{
	char path[] = "/tmp/test-lxd-vmimage.XXXXXX", cmd[256];
	static char out[4096];
	int fd = mkstemp(path);
	FILE *p;
	size_t n;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, tar, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "tar %s %s 2>&1", args, path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	cr_expect_eq(pclose(p), 0, "tar %s: %s", args, out);
	unlink(path);
	return out;
}

Test(lxd_vmimage, the_tarball_holds_metadata_yaml_as_tar_reads_it)
{
	char yaml[1024];
	unsigned char *tar;
	size_t len;
	int n = lxd_vm_metadata_yaml("x86_64", 1700000000, "vmctl: fast.qcow2", SHA, yaml,
				     sizeof(yaml));

	cr_assert_eq(lxd_tar_one("metadata.yaml", yaml, (size_t)n, 1700000000, &tar, &len), 0);
	cr_expect_eq(len % 512, 0);
	cr_expect_eq(len, 512 + 512 + 1024, "header, one block of data, the end");
	cr_expect_str_eq(tar_says(tar, len, "-xOf"), yaml);
	cr_expect_str_eq(tar_says(tar, len, "-tf"), "metadata.yaml\n");
	cr_expect_not_null(strstr(tar_says(tar, len, "--utc -tvf"), "-rw-r--r-- 0/0"),
			   "%s", tar_says(tar, len, "--utc -tvf"));
	free(tar);
}

Test(lxd_vmimage, a_block_sized_file_takes_no_padding_block)
{
	char data[512];
	unsigned char *tar;
	size_t len;

	memset(data, 'x', sizeof(data));
	cr_assert_eq(lxd_tar_one("metadata.yaml", data, sizeof(data), 0, &tar, &len), 0);
	cr_expect_eq(len, 512 + 512 + 1024);
	free(tar);
}
