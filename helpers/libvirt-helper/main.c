/* vmctl-libvirt-helper: the driver table and start-up. */
#include "lvh.h"
#include "vmcommon.h"

static const struct vmh_ops libvirt_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "libvirt",
	.scope = "qemu",
	.version = VMCTL_VERSION,
	.init = lvh_init,
	.instances_list = lvh_instances_list,
	.instance_create = lvh_instance_create,
	.instance_start = lvh_instance_start,
	.instance_stop = lvh_instance_stop,
	.instance_suspend = lvh_instance_suspend,
	.instance_restart = lvh_instance_restart,
	.instance_delete = lvh_instance_delete,
	.instance_state = lvh_instance_state,
	.instance_info = lvh_instance_info,
	.instance_set = lvh_instance_set,
	.fini = conn_fini,
};

int main(int argc, char **argv)
{
	return vmh_main(&libvirt_ops, argc, argv);
}
