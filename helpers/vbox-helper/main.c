/* vmctl-vbox-helper: the virtualbox driver's table and start-up. */
#include "vbox.h"
#include "vmcommon.h"

/* Native mounts are not in the virtualbox driver's row of the drivers
 * table (VirtualBox's shared folders need the Guest Additions in the
 * guest): left NULL, the broker's refusal names the drivers that have them. */
static const struct vmh_ops vbox_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "virtualbox",
	.scope = "virtualbox",
	.version = VMCTL_VERSION,
	.init = vbox_init,
	.instances_list = vbox_instances_list,
	.networks_list = vbox_networks_list,
	.instance_create = vbox_instance_create,
	.instance_start = vbox_instance_start,
	.instance_stop = vbox_instance_stop,
	.instance_suspend = vbox_instance_suspend,
	.instance_restart = vbox_instance_restart,
	.instance_delete = vbox_instance_delete,
	.instance_state = vbox_instance_state,
	.instance_info = vbox_instance_info,
	.instance_set = vbox_instance_set,
	.snapshot_create = vbox_snapshot_create,
	.snapshot_list = vbox_snapshot_list,
	.snapshot_restore = vbox_snapshot_restore,
	.snapshot_delete = vbox_snapshot_delete,
	.instance_clone = vbox_instance_clone,
	.fini = vbox_fini,
};

int main(int argc, char **argv)
{
	return vmh_main(&vbox_ops, argc, argv);
}
