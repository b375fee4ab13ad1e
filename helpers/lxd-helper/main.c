/* vmctl-lxd-helper: the driver table and start-up. */
#include "lxd.h"
#include "vmcommon.h"

/* Snapshots, clone and suspend are not in the lxd driver's row of the
 * drivers table: left NULL, the broker's refusal names the drivers that
 * have them. */
static const struct vmh_ops lxd_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "lxd",
	.scope = "lxd",
	.version = VMCTL_VERSION,
	.init = lxd_init,
	.instances_list = lxd_instances_list,
	.networks_list = lxd_networks_list,
	.instance_create = lxd_instance_create,
	.instance_start = lxd_instance_start,
	.instance_stop = lxd_instance_stop,
	.instance_restart = lxd_instance_restart,
	.instance_delete = lxd_instance_delete,
	.instance_state = lxd_instance_state,
	.instance_info = lxd_instance_info,
	.instance_mount = lxd_instance_mount,
	.instance_umount = lxd_instance_umount,
	.fini = lxd_fini,
	/* LXD adds and removes disk devices of a running container at once. */
	.extra_features = PROTO_FEAT_NATIVE_MOUNTS_LIVE,
	.instance_exec = lxd_instance_exec,
};

int main(int argc, char **argv)
{
	return vmh_main(&lxd_ops, argc, argv);
}
