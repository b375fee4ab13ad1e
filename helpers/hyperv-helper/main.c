/* vmctl-hyperv-helper: the driver table and start-up. */
#include "hv.h"
#include "vmcommon.h"

static const struct vmh_ops hyperv_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "hyperv",
	.scope = "hyperv",
	.version = VMCTL_VERSION,
	.init = hv_init,
	.instances_list = hv_instances_list,
	.networks_list = hv_networks_list,
	.instance_create = hv_instance_create,
	.instance_start = hv_instance_start,
	.instance_stop = hv_instance_stop,
	.instance_suspend = hv_instance_suspend,
	.instance_restart = hv_instance_restart,
	.instance_delete = hv_instance_delete,
	.instance_state = hv_instance_state,
	.instance_info = hv_instance_info,
	.instance_set = hv_instance_set,
	.instance_mount = hv_instance_mount,
	.instance_umount = hv_instance_umount,
	.instance_network_add = hv_instance_network_add,
	.snapshot_create = hv_snapshot_create,
	.snapshot_list = hv_snapshot_list,
	.snapshot_restore = hv_snapshot_restore,
	.snapshot_delete = hv_snapshot_delete,
	.instance_clone = hv_instance_clone,
};

int main(int argc, char **argv)
{
	return vmh_main(&hyperv_ops, argc, argv);
}
