/* vmctl-qemu-helper: the driver table and start-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qh.h"
#include "vmcommon.h"

/* In PATH? */
static bool main_have(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[QH_PATH];

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
		if (access(buf, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

static int main_init(const char *scope_dir, const msgpack_object *settings, char *why,
		     size_t whylen)
{
	if (vmh_accel_configure_setting("local.qemu.accel", why, whylen) < 0)
		return PROTO_E_UNAVAILABLE;
	if (!main_have("qemu-system-x86_64") || !main_have("qemu-img")) {
		snprintf(why, whylen,
			 "qemu-system-x86_64 or qemu-img is not installed (Debian packages "
			 "qemu-system-x86 and qemu-utils)");
		return PROTO_E_UNAVAILABLE;
	}
	/* Probe now so that the answer is ready by the first start. */
	vmh_accel_cache_in(scope_dir);
	vmh_accel_prepare();
	return 0;
}

static void main_fini(void)
{
	qh_ops_free();
}

static const struct vmh_ops qemu_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "qemu",
	.scope = "qemu",
	.version = VMCTL_VERSION,
	.init = main_init,
	.instances_list = qh_instances_list,
	.networks_list = qh_networks_list,
	.instance_create = qh_instance_create,
	.instance_start = qh_instance_start,
	.instance_stop = qh_instance_stop,
	.instance_suspend = qh_instance_suspend,
	.instance_restart = qh_instance_restart,
	.instance_delete = qh_instance_delete,
	.instance_state = qh_instance_state,
	.instance_info = qh_instance_info,
	.instance_set = qh_instance_set,
	.instance_mount = qh_instance_mount,
	.instance_umount = qh_instance_umount,
	.instance_network_add = qh_instance_network_add,
	.snapshot_create = qh_snapshot_create,
	.snapshot_list = qh_snapshot_list,
	.snapshot_restore = qh_snapshot_restore,
	.snapshot_delete = qh_snapshot_delete,
	.instance_clone = qh_instance_clone,
	.fini = main_fini,
};

int main(int argc, char **argv)
{
	/* Diagnosis for users: does this accelerator run a guest here? */
	if (argc == 3 && !strcmp(argv[1], "--probe-accel")) {
		char why[512];
		int rc = vmh_accel_probe_sync(argv[2], why, sizeof(why));

		printf("%s: %s (%s)\n", argv[2], rc == 0 ? "works" : "does not work", why);
		return rc == 0 ? 0 : 1;
	}
	return vmh_main(&qemu_ops, argc, argv);
}
