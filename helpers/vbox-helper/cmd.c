/*
 * The VBoxManage command lines of each operation, as argument vectors.
 * Nothing here runs anything: tests/test-vbox-cmd.c checks every line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vbox.h"

void vbox_argv_init(struct vbox_argv *a, const char *program)
{
	memset(a, 0, sizeof(*a));
	vbox_argv_add(a, "%s", program);
}

void vbox_argv_add(struct vbox_argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	if (a->bad)
		return;
	if (a->n == VBOX_ARGV_MAX) {
		a->bad = true;
		return;
	}
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		a->bad = true;
		return;
	}
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

void vbox_argv_free(struct vbox_argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	memset(a, 0, sizeof(*a));
}

void vbox_argv_join(const struct vbox_argv *a, char *buf, size_t len)
{
	size_t used = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 1; i < a->n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i > 1 ? " " : "", a->v[i]);
}

/* "52:54:00:12:34:56" as VirtualBox wants it: "525400123456". */
static void mac_plain(const char *mac, char out[13])
{
	size_t n = 0;

	for (; *mac && n < 12; mac++)
		if (*mac != ':' && *mac != '-')
			out[n++] = *mac;
	out[n] = '\0';
}

static unsigned long long mib(uint64_t bytes)
{
	return (unsigned long long)(bytes >> 20);
}

void vbox_cmd_createvm(struct vbox_argv *a, const char *name, const char *basefolder)
{
	vbox_argv_add(a, "createvm");
	vbox_argv_add(a, "--name");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--basefolder");
	vbox_argv_add(a, "%s", basefolder);
	vbox_argv_add(a, "--ostype");
	vbox_argv_add(a, "Linux_64");
	vbox_argv_add(a, "--register");
}

static void nat_forward(struct vbox_argv *a, int ssh_port)
{
	vbox_argv_add(a, "--natpf1");
	vbox_argv_add(a, "%s,tcp,127.0.0.1,%d,,22", VBOX_SSH_RULE, ssh_port);
}

void vbox_cmd_modifyvm(struct vbox_argv *a, const char *name, unsigned cpus, uint64_t memory,
		       const char *mac, int ssh_port, const struct vbox_nic *nics, size_t n_nics)
{
	char plain[13];

	vbox_argv_add(a, "modifyvm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--cpus");
	vbox_argv_add(a, "%u", cpus);
	vbox_argv_add(a, "--memory");
	vbox_argv_add(a, "%llu", mib(memory));
	vbox_argv_add(a, "--ioapic");
	vbox_argv_add(a, "on");
	/* Images without a kernel beside them boot through UEFI, as with qemu. */
	vbox_argv_add(a, "--firmware");
	vbox_argv_add(a, "efi");
	vbox_argv_add(a, "--boot1");
	vbox_argv_add(a, "disk");
	vbox_argv_add(a, "--boot2");
	vbox_argv_add(a, "none");
	vbox_argv_add(a, "--nic1");
	vbox_argv_add(a, "nat");
	vbox_argv_add(a, "--nictype1");
	vbox_argv_add(a, "virtio");
	if (mac) {
		mac_plain(mac, plain);
		vbox_argv_add(a, "--macaddress1");
		vbox_argv_add(a, "%s", plain);
	}
	nat_forward(a, ssh_port);
	for (size_t i = 0; i < n_nics; i++) {
		size_t slot = i + 2;

		vbox_argv_add(a, "--nic%zu", slot);
		vbox_argv_add(a, "%s", nics[i].hostonly ? "hostonly" : "bridged");
		vbox_argv_add(a, nics[i].hostonly ? "--hostonlyadapter%zu" : "--bridgeadapter%zu", slot);
		vbox_argv_add(a, "%s", nics[i].iface);
		vbox_argv_add(a, "--nictype%zu", slot);
		vbox_argv_add(a, "virtio");
		if (nics[i].mac) {
			mac_plain(nics[i].mac, plain);
			vbox_argv_add(a, "--macaddress%zu", slot);
			vbox_argv_add(a, "%s", plain);
		}
	}
}

void vbox_cmd_storagectl(struct vbox_argv *a, const char *name)
{
	vbox_argv_add(a, "storagectl");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--name");
	vbox_argv_add(a, VBOX_CONTROLLER);
	vbox_argv_add(a, "--add");
	vbox_argv_add(a, "sata");
	vbox_argv_add(a, "--controller");
	vbox_argv_add(a, "IntelAhci");
	vbox_argv_add(a, "--portcount");
	vbox_argv_add(a, "2");
	vbox_argv_add(a, "--bootable");
	vbox_argv_add(a, "on");
}

void vbox_cmd_diffdisk(struct vbox_argv *a, const char *disk, const char *parent)
{
	vbox_argv_add(a, "createmedium");
	vbox_argv_add(a, "disk");
	vbox_argv_add(a, "--filename");
	vbox_argv_add(a, "%s", disk);
	vbox_argv_add(a, "--diffparent");
	vbox_argv_add(a, "%s", parent);
	vbox_argv_add(a, "--format");
	vbox_argv_add(a, "VDI");
}

void vbox_cmd_resize(struct vbox_argv *a, const char *disk, uint64_t bytes)
{
	vbox_argv_add(a, "modifymedium");
	vbox_argv_add(a, "disk");
	vbox_argv_add(a, "%s", disk);
	vbox_argv_add(a, "--resize");
	vbox_argv_add(a, "%llu", mib(bytes));
}

void vbox_cmd_attach(struct vbox_argv *a, const char *name, int port, const char *medium)
{
	vbox_argv_add(a, "storageattach");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--storagectl");
	vbox_argv_add(a, VBOX_CONTROLLER);
	vbox_argv_add(a, "--port");
	vbox_argv_add(a, "%d", port);
	vbox_argv_add(a, "--device");
	vbox_argv_add(a, "0");
	vbox_argv_add(a, "--type");
	vbox_argv_add(a, port == 0 ? "hdd" : "dvddrive");
	vbox_argv_add(a, "--medium");
	vbox_argv_add(a, "%s", medium);
}

void vbox_cmd_showvminfo(struct vbox_argv *a, const char *name)
{
	vbox_argv_add(a, "showvminfo");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--machinereadable");
}

void vbox_cmd_startvm(struct vbox_argv *a, const char *name)
{
	vbox_argv_add(a, "startvm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--type");
	vbox_argv_add(a, "headless");
}

void vbox_cmd_controlvm(struct vbox_argv *a, const char *name, const char *action)
{
	vbox_argv_add(a, "controlvm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "%s", action);
}

void vbox_cmd_discardstate(struct vbox_argv *a, const char *name)
{
	vbox_argv_add(a, "discardstate");
	vbox_argv_add(a, "%s", name);
}

void vbox_cmd_unregister(struct vbox_argv *a, const char *name)
{
	vbox_argv_add(a, "unregistervm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--delete");
}

/* Every property: the pattern option differs between 6.1 (--patterns P)
 * and 7.x (patterns as arguments), and the parser keeps only
 * /VirtualBox/GuestInfo/Net/N/V4/IP anyway. */
void vbox_cmd_guestprops(struct vbox_argv *a, const char *name)
{
	vbox_argv_add(a, "guestproperty");
	vbox_argv_add(a, "enumerate");
	vbox_argv_add(a, "%s", name);
}

void vbox_cmd_snapshot(struct vbox_argv *a, const char *name, const char *op, const char *snap,
		       const char *description)
{
	vbox_argv_add(a, "snapshot");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "%s", op);
	if (!strcmp(op, "list")) {
		vbox_argv_add(a, "--machinereadable");
		return;
	}
	vbox_argv_add(a, "%s", snap);
	if (!strcmp(op, "take") && description && *description) {
		vbox_argv_add(a, "--description");
		vbox_argv_add(a, "%s", description);
	}
}

void vbox_cmd_clonevm(struct vbox_argv *a, const char *name, const char *clone,
		      const char *basefolder)
{
	vbox_argv_add(a, "clonevm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--name");
	vbox_argv_add(a, "%s", clone);
	vbox_argv_add(a, "--basefolder");
	vbox_argv_add(a, "%s", basefolder);
	vbox_argv_add(a, "--mode");
	vbox_argv_add(a, "machine");
	vbox_argv_add(a, "--register");
}

void vbox_cmd_reforward(struct vbox_argv *a, const char *name, const char *mac, int ssh_port)
{
	char plain[13];

	vbox_argv_add(a, "modifyvm");
	vbox_argv_add(a, "%s", name);
	if (mac) {
		mac_plain(mac, plain);
		vbox_argv_add(a, "--macaddress1");
		vbox_argv_add(a, "%s", plain);
	}
	vbox_argv_add(a, "--natpf1");
	vbox_argv_add(a, "delete");
	vbox_argv_add(a, VBOX_SSH_RULE);
	nat_forward(a, ssh_port);
}

void vbox_cmd_set_cpus(struct vbox_argv *a, const char *name, unsigned cpus)
{
	vbox_argv_add(a, "modifyvm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--cpus");
	vbox_argv_add(a, "%u", cpus);
}

void vbox_cmd_set_memory(struct vbox_argv *a, const char *name, uint64_t memory)
{
	vbox_argv_add(a, "modifyvm");
	vbox_argv_add(a, "%s", name);
	vbox_argv_add(a, "--memory");
	vbox_argv_add(a, "%llu", mib(memory));
}

void vbox_cmd_list(struct vbox_argv *a, const char *what)
{
	vbox_argv_add(a, "list");
	vbox_argv_add(a, "%s", what);
}

void vbox_cmd_convert(struct vbox_argv *a, const char *src, const char *format, const char *dst)
{
	vbox_argv_add(a, "convert");
	vbox_argv_add(a, "-p");
	vbox_argv_add(a, "-f");
	vbox_argv_add(a, "%s", format);
	vbox_argv_add(a, "-O");
	vbox_argv_add(a, "vdi");
	vbox_argv_add(a, "%s", src);
	vbox_argv_add(a, "%s", dst);
}
