/*
 * The libvirt domain of an instance: its XML, its state, its network.
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libvirt/virterror.h>

#include "lvh.h"

/* The vmctl network: a NAT bridge with DHCP, defined on first use so that a
 * user's own networks are never touched. */
#define DOM_NET_BRIDGE "vmctlbr0"
#define DOM_NET_ADDRESS "10.98.0.1"
#define DOM_NET_RANGE_START "10.98.0.2"
#define DOM_NET_RANGE_END "10.98.0.254"

#define DOM_SAVE_SLACK_S 2
#define DOM_METADATA_NS "https://vmctl.invalid/xmlns/libvirt/1"

static pthread_mutex_t dom_net_lock = PTHREAD_MUTEX_INITIALIZER;

void dom_name(const char *instance, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", LVH_DOMAIN_PREFIX, instance);
}

int dom_error(const char *what, char *err, size_t errlen)
{
	virErrorPtr e = virGetLastError();
	int code = e ? e->code : VIR_ERR_INTERNAL_ERROR;
	const char *msg = e && e->message ? e->message : "unknown libvirt error";
	int rc;

	switch (code) {
	case VIR_ERR_NO_DOMAIN:
	case VIR_ERR_NO_NETWORK:
		rc = PROTO_E_NOT_FOUND;
		break;
	case VIR_ERR_OPERATION_INVALID:
		rc = PROTO_E_INVALID_STATE;
		break;
	case VIR_ERR_OPERATION_TIMEOUT:
	case VIR_ERR_AGENT_UNRESPONSIVE:
		rc = PROTO_E_TIMEOUT;
		break;
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_INVALID_CONN:
	case VIR_ERR_RPC:
		rc = PROTO_E_UNAVAILABLE;
		break;
	case VIR_ERR_SYSTEM_ERROR:
		rc = e && e->domain == VIR_FROM_RPC ? PROTO_E_UNAVAILABLE : PROTO_E_DRIVER;
		break;
	default:
		rc = PROTO_E_DRIVER;
		break;
	}
	snprintf(err, errlen, "%s: %s", what, msg);
	virResetLastError();
	return rc;
}

enum proto_state dom_state(int state, int reason, bool managed_save)
{
	switch (state) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
		return PROTO_STATE_RUNNING;
	case VIR_DOMAIN_PAUSED:
		if (reason == VIR_DOMAIN_PAUSED_SAVE)
			return PROTO_STATE_SUSPENDING;
		if (reason == VIR_DOMAIN_PAUSED_STARTING_UP)
			return PROTO_STATE_STARTING;
		return PROTO_STATE_SUSPENDED;
	case VIR_DOMAIN_SHUTDOWN:
		return PROTO_STATE_STOPPING;
	case VIR_DOMAIN_SHUTOFF:
	case VIR_DOMAIN_CRASHED:
		return managed_save ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED;
	case VIR_DOMAIN_PMSUSPENDED:
		return PROTO_STATE_SUSPENDED;
	default:
		return PROTO_STATE_UNKNOWN;
	}
}

bool dom_qemu_suspended(const char *dir)
{
	char path[PATH_MAX + 16];
	struct stat st;

	if (!dir || !dir[0])
		return false;
	/* The qemu driver's mark: its state is an internal snapshot of the disk
	 * that only that driver can resume. */
	snprintf(path, sizeof(path), "%s/" PROTO_FILE_SUSPENDED, dir);
	return stat(path, &st) == 0;
}

bool dom_save_is_stale(const struct vmh_instance *inst)
{
	char dname[96], save[PATH_MAX], overlay[PATH_MAX + 16];
	struct stat ss, ds;

	if (!conn_is_local_system())
		return false;
	dom_name(inst->name, dname, sizeof(dname));
	snprintf(save, sizeof(save), "/var/lib/libvirt/qemu/save/%s.save", dname);
	inst_overlay_path(inst, overlay, sizeof(overlay));
	if (stat(save, &ss) < 0 || stat(overlay, &ds) < 0)
		return false;
	/* libvirt finishes the save file's header after QEMU has flushed the
	 * disk, so a disk newer than the save (with slack for coarse clocks)
	 * was written by someone else. */
	return ds.st_mtime > ss.st_mtime + DOM_SAVE_SLACK_S;
}

int dom_query_state(virConnectPtr c, const char *name, const char *dir, enum proto_state *state,
		    char *err, size_t errlen)
{
	char dname[96];
	int st, reason, saved, rc = 0;

	dom_name(name, dname, sizeof(dname));
	virDomainPtr d = virDomainLookupByName(c, dname);
	if (!d) {
		rc = dom_error("cannot look up the domain", err, errlen);
		if (rc == PROTO_E_NOT_FOUND) {
			/* Not defined yet, e.g. created under the qemu driver:
			 * it is defined when it starts. */
			*state = dom_qemu_suspended(dir) ? PROTO_STATE_SUSPENDED : PROTO_STATE_STOPPED;
			return 0;
		}
		return rc;
	}
	if (virDomainGetState(d, &st, &reason, 0) < 0) {
		rc = dom_error("cannot read the domain state", err, errlen);
		goto out_free;
	}
	saved = st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED
			? virDomainHasManagedSaveImage(d, 0)
			: 0;
	if (saved < 0) {
		rc = dom_error("cannot look for a saved state", err, errlen);
		goto out_free;
	}
	*state = dom_state(st, reason, saved > 0 || dom_qemu_suspended(dir));
out_free:
	virDomainFree(d);
	return rc;
}

/* Text for XML character data and single-quoted attributes. */
static void dom_put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '\'': fputs("&apos;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f); break;
		}
	}
}

/* fprintf where every %s argument is XML-escaped: only %s, %u, %llu. */
static void dom_put(FILE *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (const char *p = fmt; *p; p++) {
		if (*p != '%') {
			fputc(*p, f);
			continue;
		}
		p++;
		if (*p == 's') {
			dom_put_escaped(f, va_arg(ap, const char *));
		} else if (*p == 'u') {
			fprintf(f, "%u", va_arg(ap, unsigned));
		} else if (strncmp(p, "llu", 3) == 0) {
			fprintf(f, "%llu", va_arg(ap, unsigned long long));
			p += 2;
		} else {
			fputc('%', f);
			fputc(*p, f);
		}
	}
	va_end(ap);
}

char *dom_xml(const struct vmh_instance *inst, const struct dom_xml_opts *o)
{
	char dname[96], overlay[PATH_MAX + 16], console[PATH_MAX + 16];
	bool kvm = o->kvm;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	dom_name(inst->name, dname, sizeof(dname));
	inst_overlay_path(inst, overlay, sizeof(overlay));
	snprintf(console, sizeof(console), "%s/console.log", inst->dir);

	dom_put(f, "<domain type='%s'>\n", kvm ? "kvm" : "qemu");
	dom_put(f, "  <name>%s</name>\n", dname);
	if (o->uuid)
		dom_put(f, "  <uuid>%s</uuid>\n", o->uuid);
	dom_put(f, "  <title>vmctl instance %s</title>\n", inst->name);
	dom_put(f, "  <description>Managed by vmctl (libvirt driver). Disk and seed live in %s; "
		   "use vmctl to change this domain.</description>\n", inst->dir);
	dom_put(f, "  <metadata><vmctl:instance xmlns:vmctl='%s' name='%s' dir='%s'/></metadata>\n",
		DOM_METADATA_NS, inst->name, inst->dir);
	dom_put(f, "  <memory unit='b'>%llu</memory>\n", (unsigned long long)inst->memory);
	dom_put(f, "  <vcpu placement='static'>%u</vcpu>\n", inst->cpus);
	dom_put(f, "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n");
	if (inst->image.kernel) {
		dom_put(f, "    <kernel>%s</kernel>\n", inst->image.kernel);
		if (inst->image.initrd)
			dom_put(f, "    <initrd>%s</initrd>\n", inst->image.initrd);
		if (inst->image.cmdline)
			dom_put(f, "    <cmdline>%s</cmdline>\n", inst->image.cmdline);
	}
	dom_put(f, "    <boot dev='hd'/>\n  </os>\n");
	dom_put(f, "  <features><acpi/><apic/></features>\n");
	/* TCG: the richest CPU QEMU can emulate (-cpu max); KVM: the host's. */
	dom_put(f, "  <cpu mode='%s' check='none'/>\n", kvm ? "host-passthrough" : "maximum");
	dom_put(f, "  <clock offset='utc'/>\n");
	dom_put(f, "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
		   "  <on_crash>destroy</on_crash>\n");
	dom_put(f, "  <devices>\n");
	dom_put(f, "    <disk type='file' device='disk'>\n"
		   "      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
		   "      <source file='%s'/>\n      <target dev='vda' bus='virtio'/>\n"
		   "    </disk>\n", overlay);
	if (inst->seed)
		dom_put(f, "    <disk type='file' device='disk'>\n"
			   "      <driver name='qemu' type='raw'/>\n"
			   "      <source file='%s'/>\n      <target dev='vdb' bus='virtio'/>\n"
			   "      <readonly/>\n    </disk>\n", inst->seed);
	dom_put(f, "    <interface type='network'>\n      <source network='%s'/>\n",
		o->network);
	if (inst->mac)
		dom_put(f, "      <mac address='%s'/>\n", inst->mac);
	dom_put(f, "      <model type='virtio'/>\n    </interface>\n");
	dom_put(f, "    <serial type='file'>\n      <source path='%s' append='on'/>\n"
		   "      <target port='0'/>\n    </serial>\n", console);
	dom_put(f, "    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n");
	dom_put(f, "    <memballoon model='none'/>\n");
	dom_put(f, "  </devices>\n");
	if (o->static_owner)
		dom_put(f, "  <seclabel type='static' model='dac' relabel='no'>"
			   "<label>+%u:+%u</label></seclabel>\n", o->owner, o->group);
	dom_put(f, "</domain>\n");
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

virDomainPtr dom_define(virConnectPtr c, const struct vmh_instance *inst, char *err, size_t errlen)
{
	char dname[96], uuid[VIR_UUID_STRING_BUFLEN];
	struct dom_xml_opts o = {.network = conn_settings()->network, .kvm = conn_use_kvm()};
	struct stat st;
	virDomainPtr d;
	char *xml;

	dom_name(inst->name, dname, sizeof(dname));
	d = virDomainLookupByName(c, dname);
	if (d) {
		if (virDomainGetUUIDString(d, uuid) == 0)
			o.uuid = uuid;
		virDomainFree(d);
	}
	virResetLastError();
	/* On the local system daemon, QEMU runs as the owner of the instance
	 * folder, as the qemu driver does, instead of libvirt-qemu: the folder
	 * may not be reachable for that user, and relabelling the shared base
	 * image back and forth would race with instances of the qemu driver. */
	if (conn_is_local_system() && stat(inst->dir, &st) == 0) {
		o.static_owner = true;
		o.owner = (unsigned)st.st_uid;
		o.group = (unsigned)st.st_gid;
	}
	xml = dom_xml(inst, &o);
	if (!xml) {
		snprintf(err, errlen, "out of memory building the domain XML");
		return NULL;
	}
	d = virDomainDefineXML(c, xml);
	if (!d)
		dom_error("cannot define the libvirt domain", err, errlen);
	free(xml);
	return d;
}

static int dom_network_define(virConnectPtr c, const char *name, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	virNetworkPtr n;

	if (!f)
		return PROTO_E_NOMEM;
	dom_put(f, "<network>\n  <name>%s</name>\n  <forward mode='nat'/>\n", name);
	dom_put(f, "  <bridge name='%s' stp='on' delay='0'/>\n", DOM_NET_BRIDGE);
	dom_put(f, "  <ip address='%s' netmask='255.255.255.0'>\n"
		   "    <dhcp><range start='%s' end='%s'/></dhcp>\n  </ip>\n</network>\n",
		DOM_NET_ADDRESS, DOM_NET_RANGE_START, DOM_NET_RANGE_END);
	if (fclose(f) != 0) {
		free(buf);
		return PROTO_E_NOMEM;
	}
	n = virNetworkDefineXML(c, buf);
	free(buf);
	if (!n)
		return dom_error("cannot define the vmctl network", err, errlen);
	if (virNetworkSetAutostart(n, 1) < 0)
		virResetLastError();
	virNetworkFree(n);
	vmh_log(VMH_INFO, "defined libvirt network %s (%s/24 on %s)", name, DOM_NET_ADDRESS,
		DOM_NET_BRIDGE);
	return 0;
}

int dom_network_ensure(virConnectPtr c, char *err, size_t errlen)
{
	const char *name = conn_settings()->network;
	virNetworkPtr n;
	int rc = 0;

	pthread_mutex_lock(&dom_net_lock);
	n = virNetworkLookupByName(c, name);
	if (!n) {
		rc = dom_error("cannot find the libvirt network", err, errlen);
		if (rc != PROTO_E_NOT_FOUND)
			goto out_unlock;
		if (strcmp(name, LVH_DEFAULT_NETWORK) != 0) {
			snprintf(err, errlen, "the libvirt network '%s' (local.libvirt.network) does not exist",
				 name);
			rc = PROTO_E_NOT_FOUND;
			goto out_unlock;
		}
		rc = dom_network_define(c, name, err, errlen);
		if (rc < 0)
			goto out_unlock;
		n = virNetworkLookupByName(c, name);
		if (!n) {
			rc = dom_error("cannot find the libvirt network", err, errlen);
			goto out_unlock;
		}
	}
	if (virNetworkIsActive(n) == 0 && virNetworkCreate(n) < 0) {
		char what[128];
		snprintf(what, sizeof(what), "cannot start the libvirt network '%s'", name);
		rc = dom_error(what, err, errlen);
	}
	virNetworkFree(n);
out_unlock:
	pthread_mutex_unlock(&dom_net_lock);
	return rc;
}

/* The dir='...' attribute of our metadata element, unescaped. */
static int dom_metadata_dir(virDomainPtr d, char *dir, size_t len)
{
	char *xml = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, DOM_METADATA_NS, 0);
	const char *p, *q;
	size_t n = 0;
	char quote;

	if (!xml) {
		virResetLastError();
		return PROTO_E_NOT_FOUND;
	}
	p = strstr(xml, " dir=");
	if (!p || (p[5] != '\'' && p[5] != '"')) {
		free(xml);
		return PROTO_E_NOT_FOUND;
	}
	quote = p[5];
	for (q = p + 6; *q && *q != quote && n + 1 < len; q++) {
		static const struct { const char *ent; char ch; } ents[] = {
			{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}, {"&quot;", '"'},
		};
		char ch = *q;
		for (size_t i = 0; ch == '&' && i < sizeof(ents) / sizeof(ents[0]); i++) {
			size_t el = strlen(ents[i].ent);
			if (strncmp(q, ents[i].ent, el) == 0) {
				ch = ents[i].ch;
				q += el - 1;
				break;
			}
		}
		dir[n++] = ch;
	}
	dir[n] = '\0';
	free(xml);
	return *q == quote && n > 0 ? 0 : PROTO_E_NOT_FOUND;
}

/* Undefine the inactive persistent vmctl domains for which keep() is false. */
static int dom_undefine_unless(virConnectPtr c, bool (*keep)(virDomainPtr d, const char *dir),
			       const char *why)
{
	virDomainPtr *doms = NULL;
	size_t plen = strlen(LVH_DOMAIN_PREFIX);
	int n, removed = 0;

	n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_INACTIVE |
						       VIR_CONNECT_LIST_DOMAINS_PERSISTENT);
	if (n < 0) {
		virResetLastError();
		return 0;
	}
	for (int i = 0; i < n; i++) {
		const char *name = virDomainGetName(doms[i]);
		char dir[PATH_MAX];

		/* Only domains that carry our metadata. */
		if (name && strncmp(name, LVH_DOMAIN_PREFIX, plen) == 0 &&
		    dom_metadata_dir(doms[i], dir, sizeof(dir)) == 0 && dir[0] == '/' &&
		    !keep(doms[i], dir)) {
			if (virDomainUndefineFlags(doms[i], VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
								   VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
								   VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
								   VIR_DOMAIN_UNDEFINE_NVRAM) == 0) {
				vmh_log(VMH_INFO, "removed domain %s: %s (%s)", name, why, dir);
				removed++;
			} else {
				vmh_log(VMH_WARN, "cannot remove the domain %s: %s", name,
					virGetLastErrorMessage());
				virResetLastError();
			}
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	return removed;
}

/* Purged, possibly under the qemu driver: the folder is gone for good. */
static bool dom_folder_exists(virDomainPtr d, const char *dir)
{
	struct stat st;

	(void)d;
	return stat(dir, &st) == 0 || errno != ENOENT;
}

int dom_collect_orphans(virConnectPtr c)
{
	return dom_undefine_unless(c, dom_folder_exists, "its instance folder is gone");
}

/* A managed save is the instance's suspended state: it must stay. */
static bool dom_holds_state(virDomainPtr d, const char *dir)
{
	int saved = virDomainHasManagedSaveImage(d, 0);

	(void)dir;
	if (saved < 0)
		virResetLastError();
	return saved != 0;
}

int dom_retire_idle(virConnectPtr c)
{
	return dom_undefine_unless(c, dom_holds_state,
				   "its instance is stopped and its definition is made again at the next start");
}
