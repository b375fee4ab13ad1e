/*
 * lxd-vm-import SOCKET QCOW2: import QCOW2 into the LXD on SOCKET as the lxd
 * driver does for a virtual machine (lxd_vm_image_ensure), and print the
 * image's fingerprint. For tests/e2e/test-lxd-vm.sh: on a host where LXD
 * cannot run virtual machines, the driver refuses them before importing
 * anything, so its import is run here on its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lxd.h"

int main(int argc, char **argv)
{
	char sha[65], fp[65], err[1024], arch[32];
	struct lxd_resp r;
	const char *a;

	if (argc != 3) {
		fprintf(stderr, "usage: lxd-vm-import SOCKET QCOW2\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_NOTHING);
	if (lxd_call(argv[1], "GET", "/1.0", NULL, NULL, 10, &r, err, sizeof(err)) < 0) {
		fprintf(stderr, "lxd-vm-import: %s\n", err);
		return 1;
	}
	a = json_string_value(
		json_object_get(json_object_get(r.metadata, "environment"), "kernel_architecture"));
	snprintf(arch, sizeof(arch), "%s", a ? a : "x86_64");
	lxd_resp_free(&r);
	if (lxd_sha256_file(argv[2], sha, err, sizeof(err)) < 0 ||
	    lxd_vm_image_ensure(argv[1], argv[2], sha, arch, 600, fp, err, sizeof(err)) < 0) {
		fprintf(stderr, "lxd-vm-import: %s\n", err);
		return 1;
	}
	printf("%s\n", fp);
	curl_global_cleanup();
	return 0;
}
