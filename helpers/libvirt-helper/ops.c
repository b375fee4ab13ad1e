/*
 * The libvirt driver's requests. Each handler copies what it needs
 * out of the request, runs the libvirt calls on a worker thread (ops_*_work)
 * and answers from the main thread (ops_done).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "lvh.h"
#include "vmcommon.h"

#define OPS_DEFAULT_STOP_TIMEOUT 120.0
#define OPS_SSH_PORT 22
/* Within the broker's start deadline (180 s), with room for the boot. */
#define OPS_LEASE_WAIT 150.0
/* Within the broker's list deadline (30 s). */
#define OPS_LIST_WAIT 15.0

enum ops_kind { OPS_STATE_RESULT, OPS_EMPTY_RESULT, OPS_INFO_RESULT, OPS_LIST_RESULT, OPS_SET_RESULT };

struct ops_job {
	struct vmh_req *req;
	void (*work)(struct ops_job *job, virConnectPtr c);
	enum ops_kind kind;
	bool wait_for_conn; /* false: no connection makes states unknown, not an error */
	bool claimed;       /* holds the SDK's busy claim of inst */
	struct vmh_instance inst;
	bool force;
	bool escalate;  /* stop: force a guest that does not power off within timeout */
	bool discard_qemu_suspend; /* stop: drop the qemu driver's suspend, then answer */
	double timeout;
	char set_key[16]; /* instance.set */
	uint64_t set_value;

	int err;
	char msg[1024];
	enum proto_state state;

	/* instance.info */
	char ipv4[LVH_MAX_ADDRS][64];
	size_t n_ipv4;
	char ssh_host[64];
	long pid;

	/* instances.list */
	size_t n;
	char (*names)[64];
	char (*dirs)[PATH_MAX];
	char (*macs)[32];
	char (*list_ipv4)[64];
	enum proto_state *states;
};

static int ops_fail(struct ops_job *job, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int ops_fail(struct ops_job *job, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job->msg, sizeof(job->msg), fmt, ap);
	va_end(ap);
	job->err = err;
	return err;
}

static int ops_libvirt_fail(struct ops_job *job, const char *what)
{
	char m[768];
	int rc = dom_error(what, m, sizeof(m));
	return ops_fail(job, rc, "%s: %s", job->inst.name, m);
}

static double ops_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The instance's domain, or NULL (job->err set unless it is just missing). */
static virDomainPtr ops_lookup(struct ops_job *job, virConnectPtr c)
{
	char dname[96];
	virDomainPtr d;

	dom_name(job->inst.name, dname, sizeof(dname));
	d = virDomainLookupByName(c, dname);
	if (!d) {
		char m[512];
		int rc = dom_error("cannot look up the domain", m, sizeof(m));
		if (rc != PROTO_E_NOT_FOUND)
			ops_fail(job, rc, "%s: %s", job->inst.name, m);
	}
	return d;
}

static int ops_get_state(struct ops_job *job, virDomainPtr d, int *st, bool *saved)
{
	int reason, has;

	if (virDomainGetState(d, st, &reason, 0) < 0)
		return ops_libvirt_fail(job, "cannot read the domain state");
	*saved = false;
	if (*st == VIR_DOMAIN_SHUTOFF || *st == VIR_DOMAIN_CRASHED) {
		has = virDomainHasManagedSaveImage(d, 0);
		if (has < 0)
			return ops_libvirt_fail(job, "cannot look for a saved state");
		*saved = has > 0;
	}
	return 0;
}

/* Wait for the domain to be off, woken by lifecycle events; the periodic
 * re-check only covers events lost while libvirtd restarts. */
static int ops_wait_off(struct ops_job *job, virDomainPtr d, double timeout, bool *off)
{
	unsigned long gen = conn_event_gen();
	double deadline = ops_now() + timeout;
	bool saved = false;
	int st;

	for (;;) {
		if (ops_get_state(job, d, &st, &saved) < 0)
			return job->err;
		*off = st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED;
		double left = deadline - ops_now();
		if (*off || left <= 0)
			return 0;
		conn_wait_event(&gen, left < 1.0 ? left : 1.0);
	}
}

/* virDomainDestroy, where a domain that is already off counts as done (it
 * may have stopped on its own between our look and the call). */
static int ops_destroy(struct ops_job *job, virDomainPtr d)
{
	char m[512];
	int rc;

	if (virDomainDestroy(d) == 0)
		return 0;
	rc = dom_error("cannot force the domain off", m, sizeof(m));
	if (rc == PROTO_E_INVALID_STATE && virDomainIsActive(d) == 0)
		return 0;
	virResetLastError();
	return ops_fail(job, rc, "%s: %s", job->inst.name, m);
}

/* Graceful power-off, forced after timeout. */
static int ops_power_off(struct ops_job *job, virDomainPtr d, double timeout)
{
	bool off = false;

	if (virDomainShutdownFlags(d, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0) {
		char m[512];
		int rc = dom_error("ACPI shutdown", m, sizeof(m));
		if (rc != PROTO_E_INVALID_STATE)
			return ops_fail(job, rc, "%s: %s", job->inst.name, m);
		/* Already off between our look and the request. */
	}
	if (ops_wait_off(job, d, timeout, &off) < 0)
		return job->err;
	if (off)
		return 0;
	if (!job->escalate)
		return ops_fail(job, PROTO_E_DRIVER, "%s did not power off within %.0f s (left running)",
				job->inst.name, timeout);
	vmh_log(VMH_INFO, "%s did not power off within %.0f s; forcing it off", job->inst.name,
		timeout);
	return ops_destroy(job, d);
}

/* Define the domain over the instance's files, or refresh its definition
 * from the instance map (cpus, memory, image) while it is off. */
static virDomainPtr ops_define(struct ops_job *job, virConnectPtr c)
{
	char m[768];
	virDomainPtr d = dom_define(c, &job->inst, m, sizeof(m));

	if (!d)
		ops_fail(job, PROTO_E_DRIVER, "%s: %s", job->inst.name, m);
	return d;
}

static int ops_boot(struct ops_job *job, virConnectPtr c, virDomainPtr *dp, bool saved)
{
	char m[768];
	int rc;

	if ((rc = dom_network_ensure(c, m, sizeof(m))) < 0)
		return ops_fail(job, rc, "%s: %s", job->inst.name, m);
	if (!saved) {
		virDomainPtr nd = ops_define(job, c);
		if (!nd)
			return job->err;
		virDomainFree(*dp);
		*dp = nd;
	}
	if (virDomainCreate(*dp) < 0) {
		rc = dom_error(saved ? "cannot restore the saved state" : "cannot start the domain", m,
			       sizeof(m));
		if (saved)
			return ops_fail(job, rc,
					"%s: %s (`vmctl stop --force %s` discards the saved state)",
					job->inst.name, m, job->inst.name);
		/* Never retried under emulation behind the user's back: say which
		 * accelerator failed and which setting chose it. */
		if (conn_use_kvm())
			return ops_fail(job, rc,
					"%s: %s (domain type kvm, chosen by %s; "
					"`vmctl set local.libvirt.accel=tcg` runs it under emulation)",
					job->inst.name, m, vmh_accel_setting());
		return ops_fail(job, rc, "%s: %s", job->inst.name, m);
	}
	return 0;
}

/* The guest's IPv4 addresses from the network's DHCP leases; ssh_host is
 * the one on the instance's own MAC if there is one. */
static int ops_addresses_from(struct ops_job *job, virDomainPtr d, unsigned source)
{
	virDomainInterfacePtr *ifaces = NULL;
	int n = virDomainInterfaceAddresses(d, &ifaces, source, 0);

	job->n_ipv4 = 0;
	job->ssh_host[0] = '\0';
	if (n < 0)
		return ops_libvirt_fail(job, source == VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE
						     ? "cannot read DHCP leases"
						     : "cannot read the host's ARP table");
	for (int i = 0; i < n; i++) {
		bool ours = job->inst.mac && ifaces[i]->hwaddr &&
			    strcasecmp(ifaces[i]->hwaddr, job->inst.mac) == 0;
		for (unsigned j = 0; j < ifaces[i]->naddrs; j++) {
			const virDomainIPAddress *a = &ifaces[i]->addrs[j];
			if (a->type != VIR_IP_ADDR_TYPE_IPV4 || job->n_ipv4 >= LVH_MAX_ADDRS)
				continue;
			snprintf(job->ipv4[job->n_ipv4++], sizeof(job->ipv4[0]), "%s", a->addr);
			if (ours || !job->ssh_host[0])
				snprintf(job->ssh_host, sizeof(job->ssh_host), "%s", a->addr);
		}
		virDomainInterfaceFree(ifaces[i]);
	}
	free(ifaces);
	return 0;
}

static int ops_addresses(struct ops_job *job, virDomainPtr d)
{
	int rc = ops_addresses_from(job, d, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE);

	/* A guest restored after its lease ran out keeps using the address
	 * until it renews; the host's ARP table still knows it. */
	if (rc == 0 && job->n_ipv4 == 0 &&
	    ops_addresses_from(job, d, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP) < 0) {
		job->err = 0;
		virResetLastError();
	}
	return rc;
}

/* After a boot, wait (bounded) for the guest's DHCP lease: until it has
 * one, nobody can know where its SSH listens. There is no lease event, so
 * this looks every half second, or sooner if the domain changes state. */
static void ops_wait_lease(struct ops_job *job, virDomainPtr d)
{
	unsigned long gen = conn_event_gen();
	double deadline = ops_now() + OPS_LEASE_WAIT;

	while (ops_now() < deadline) {
		if (ops_addresses(job, d) < 0) {
			job->err = 0; /* the start itself worked */
			return;
		}
		if (job->ssh_host[0] || virDomainIsActive(d) != 1)
			return;
		conn_wait_event(&gen, 0.5);
	}
	vmh_log(VMH_WARN, "%s has no DHCP lease after %.0f s", job->inst.name, OPS_LEASE_WAIT);
}

/* ---- work, on worker threads ---- */

static void ops_start_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	bool saved = false;
	int st;

	if (!d && job->err)
		return;
	if (!d) {
		/* First start under libvirt, e.g. created by the qemu driver. */
		d = ops_define(job, c);
		if (!d)
			return;
	}
	if (ops_get_state(job, d, &st, &saved) < 0)
		goto out_free;
	switch (st) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
		break;
	case VIR_DOMAIN_PAUSED:
		if (virDomainResume(d) < 0)
			ops_libvirt_fail(job, "cannot resume the domain");
		break;
	case VIR_DOMAIN_SHUTDOWN:
		ops_fail(job, PROTO_E_INVALID_STATE, "%s is stopping; start it once it has stopped",
			 job->inst.name);
		break;
	default:
		if (saved && dom_save_is_stale(&job->inst)) {
			vmh_log(VMH_WARN, "%s: the disk changed after libvirt saved the instance "
					  "(it ran under another driver); discarding the saved state",
				job->inst.name);
			if (virDomainManagedSaveRemove(d, 0) < 0) {
				ops_libvirt_fail(job, "cannot discard the stale saved state");
				break;
			}
			saved = false;
		}
		if (!saved && dom_qemu_suspended(job->inst.dir)) {
			ops_fail(job, PROTO_E_INVALID_STATE,
				 "%s was suspended by the qemu driver, which alone can resume it "
				 "(vmctl set local.driver=qemu); `vmctl stop --force %s` discards "
				 "that state", job->inst.name, job->inst.name);
			break;
		}
		conn_post_state(job->inst.name, PROTO_STATE_STARTING);
		if (ops_boot(job, c, &d, saved) == 0)
			ops_wait_lease(job, d);
		break;
	}
	if (!job->err)
		job->state = PROTO_STATE_RUNNING;
out_free:
	virDomainFree(d);
}

/* A suspend left by the qemu driver is dropped only when asked to; the
 * main thread drops it once the libvirt calls are done (ops_done), since
 * qemu-img runs from the loop. */
static int ops_discard_qemu_suspend(struct ops_job *job)
{
	if (!dom_qemu_suspended(job->inst.dir))
		return 0;
	if (!job->force)
		return ops_fail(job, PROTO_E_INVALID_STATE,
				"%s is suspended (by the qemu driver); stopping it would discard "
				"its saved state (use --force for that)", job->inst.name);
	job->discard_qemu_suspend = true;
	return 0;
}

static void ops_stop_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	bool saved = false;
	int st;

	if (!d) {
		if (!job->err && ops_discard_qemu_suspend(job) == 0)
			job->state = PROTO_STATE_STOPPED;
		return;
	}
	if (ops_get_state(job, d, &st, &saved) < 0)
		goto out_free;
	if ((st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED) && !saved &&
	    ops_discard_qemu_suspend(job) < 0)
		goto out_free;
	if (st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED) {
		if (saved && !job->force) {
			ops_fail(job, PROTO_E_INVALID_STATE,
				 "%s is suspended; stopping it would discard its saved state "
				 "(use --force for that)", job->inst.name);
			goto out_free;
		}
		if (saved && virDomainManagedSaveRemove(d, 0) < 0) {
			ops_libvirt_fail(job, "cannot discard the saved state");
			goto out_free;
		}
		if (saved)
			conn_post_state(job->inst.name, PROTO_STATE_STOPPED);
	} else if (job->force) {
		if (ops_destroy(job, d) < 0)
			goto out_free;
	} else {
		/* A paused guest cannot see the power button. */
		if (st == VIR_DOMAIN_PAUSED && virDomainResume(d) < 0) {
			ops_libvirt_fail(job, "cannot resume the paused domain");
			goto out_free;
		}
		conn_post_state(job->inst.name, PROTO_STATE_STOPPING);
		if (ops_power_off(job, d, job->timeout) < 0)
			goto out_free;
	}
	job->state = PROTO_STATE_STOPPED;
out_free:
	virDomainFree(d);
}

static void ops_restart_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	bool saved = false;
	int st;

	if (!d && job->err)
		return;
	if (!d) {
		ops_start_work(job, c);
		return;
	}
	if (ops_get_state(job, d, &st, &saved) < 0)
		goto out_free;
	if (saved || ((st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED) &&
		      dom_qemu_suspended(job->inst.dir))) {
		ops_fail(job, PROTO_E_INVALID_STATE,
			 "%s is suspended; start it to resume it, or stop it with --force to "
			 "discard its saved state", job->inst.name);
		goto out_free;
	}
	conn_post_state(job->inst.name, PROTO_STATE_RESTARTING);
	if (st != VIR_DOMAIN_SHUTOFF && st != VIR_DOMAIN_CRASHED) {
		if (st == VIR_DOMAIN_PAUSED && virDomainResume(d) < 0) {
			ops_libvirt_fail(job, "cannot resume the paused domain");
			goto out_free;
		}
		if (ops_power_off(job, d, job->timeout) < 0)
			goto out_free;
	}
	if (ops_boot(job, c, &d, saved) == 0) {
		ops_wait_lease(job, d);
		job->state = PROTO_STATE_RUNNING;
	}
out_free:
	virDomainFree(d);
}

static void ops_suspend_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	bool saved = false;
	int st;

	if (!d) {
		if (!job->err)
			ops_fail(job, PROTO_E_INVALID_STATE,
				 "%s is stopped; only a running instance can be suspended",
				 job->inst.name);
		return;
	}
	if (ops_get_state(job, d, &st, &saved) < 0)
		goto out_free;
	if (saved) {
		job->state = PROTO_STATE_SUSPENDED;
		goto out_free;
	}
	if (st == VIR_DOMAIN_SHUTOFF || st == VIR_DOMAIN_CRASHED) {
		ops_fail(job, PROTO_E_INVALID_STATE,
			 "%s is stopped; only a running instance can be suspended", job->inst.name);
		goto out_free;
	}
	conn_post_state(job->inst.name, PROTO_STATE_SUSPENDING);
	if (virDomainManagedSave(d, 0) < 0) {
		enum proto_state now = PROTO_STATE_UNKNOWN;
		char m[256];
		ops_libvirt_fail(job, "cannot save the domain");
		if (dom_query_state(c, job->inst.name, job->inst.dir, &now, m, sizeof(m)) == 0)
			conn_post_state(job->inst.name, now);
		goto out_free;
	}
	job->state = PROTO_STATE_SUSPENDED;
out_free:
	virDomainFree(d);
}

static void ops_delete_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	int active;

	if (!d)
		return;
	active = virDomainIsActive(d);
	if (active < 0) {
		ops_libvirt_fail(job, "cannot read the domain state");
		goto out_free;
	}
	if (active && ops_destroy(job, d) < 0)
		goto out_free;
	/* The disk and the seed stay: they belong to the scope, not to libvirt. */
	if (virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
					  VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
					  VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
					  VIR_DOMAIN_UNDEFINE_NVRAM) < 0)
		ops_libvirt_fail(job, "cannot remove the domain definition");
out_free:
	virDomainFree(d);
}

static void ops_create_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	bool saved = false;
	int st = VIR_DOMAIN_SHUTOFF;

	if (!d && job->err)
		return;
	if (d && ops_get_state(job, d, &st, &saved) < 0)
		goto out_free;
	/* A running or saved domain keeps its definition until it is off. */
	if (d && (saved || (st != VIR_DOMAIN_SHUTOFF && st != VIR_DOMAIN_CRASHED)))
		goto out_free;
	virDomainFree(d);
	d = ops_define(job, c);
out_free:
	if (d)
		virDomainFree(d);
}

static void ops_set_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d = ops_lookup(job, c);
	int st = VIR_DOMAIN_SHUTOFF;
	bool saved = false;

	if (!d && job->err)
		return;
	if (d && ops_get_state(job, d, &st, &saved) < 0)
		goto out_free;
	if (saved || dom_qemu_suspended(job->inst.dir) ||
	    (st != VIR_DOMAIN_SHUTOFF && st != VIR_DOMAIN_CRASHED)) {
		/* A running guest would not see it, a saved one must come back
		 * with the devices it was saved with. */
		ops_fail(job, PROTO_E_INVALID_STATE,
			 "%s is %s; libvirt takes new specs at its start: stop it first",
			 job->inst.name, saved || st == VIR_DOMAIN_SHUTOFF ? "suspended" : "running");
		goto out_free;
	}
	if (strcmp(job->set_key, "cpus") == 0)
		job->inst.cpus = (unsigned)job->set_value;
	else if (strcmp(job->set_key, "memory") == 0)
		job->inst.memory = job->set_value;
	/* Keep an existing definition in step; start redefines it anyway. */
	if (d && strcmp(job->set_key, "disk") != 0) {
		virDomainPtr nd = ops_define(job, c);
		if (nd)
			virDomainFree(nd);
	}
out_free:
	if (d)
		virDomainFree(d);
}

static void ops_state_work(struct ops_job *job, virConnectPtr c)
{
	char m[512];
	int rc = dom_query_state(c, job->inst.name, job->inst.dir, &job->state, m, sizeof(m));

	if (rc < 0)
		ops_fail(job, rc, "%s: %s", job->inst.name, m);
}

static void ops_read_pid(struct ops_job *job)
{
	char path[256], buf[32], dname[96];
	FILE *f;

	if (!conn_is_local_system())
		return;
	dom_name(job->inst.name, dname, sizeof(dname));
	snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", dname);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f))
		job->pid = strtol(buf, NULL, 10);
	fclose(f);
}

static void ops_info_work(struct ops_job *job, virConnectPtr c)
{
	virDomainPtr d;

	ops_state_work(job, c);
	if (job->err || job->state != PROTO_STATE_RUNNING)
		return;
	d = ops_lookup(job, c);
	if (!d)
		return;
	if (ops_addresses(job, d) < 0) {
		/* Addresses are best effort: the state is still worth answering. */
		vmh_log(VMH_WARN, "%s", job->msg);
		job->err = 0;
	}
	ops_read_pid(job);
	virDomainFree(d);
}

static void ops_list_work(struct ops_job *job, virConnectPtr c)
{
	char m[512];

	for (size_t i = 0; i < job->n; i++) {
		job->states[i] = PROTO_STATE_UNKNOWN;
		if (c && dom_query_state(c, job->names[i], job->dirs[i], &job->states[i], m, sizeof(m)) < 0) {
			vmh_log(VMH_WARN, "%s: %s", job->names[i], m);
			job->states[i] = PROTO_STATE_UNKNOWN;
		}
		/* Addresses too, as the qemu driver gives them: one call fewer
		 * per instance for the broker's list. */
		if (job->states[i] == PROTO_STATE_RUNNING) {
			char dname[96];
			dom_name(job->names[i], dname, sizeof(dname));
			virDomainPtr d = virDomainLookupByName(c, dname);
			if (d) {
				struct ops_job one = {.inst.name = job->names[i],
						      .inst.mac = job->macs[i][0] ? job->macs[i] : NULL};
				if (ops_addresses(&one, d) == 0 && one.ssh_host[0])
					snprintf(job->list_ipv4[i], sizeof(job->list_ipv4[0]), "%s",
						 one.ssh_host);
				virDomainFree(d);
			}
			virResetLastError();
		}
	}
}

/* ---- dispatch ---- */

static void ops_thread(void *arg)
{
	struct ops_job *job = arg;
	char m[768];
	virConnectPtr c = job->wait_for_conn ? conn_get(m, sizeof(m)) : conn_peek(OPS_LIST_WAIT);

	if (!c && job->wait_for_conn) {
		ops_fail(job, PROTO_E_UNAVAILABLE, "%s", m);
		return;
	}
	job->work(job, c);
	if (c)
		virConnectClose(c);
}

static void ops_free(struct ops_job *job)
{
	if (job->claimed)
		vmh_busy_release(job->inst.name);
	vmh_instance_free(&job->inst);
	free(job->names);
	free(job->dirs);
	free(job->macs);
	free(job->list_ipv4);
	free(job->states);
	free(job);
}

/* Answer the request of a job whose work went well, and free it. */
static void ops_answer(struct ops_job *job)
{
	msgpack_packer *pk = vmh_result(job->req);

	switch (job->kind) {
	case OPS_STATE_RESULT:
		vmh_state_notify(job->inst.name, job->state);
		msgpack_pack_map(pk, 1);
		proto_pack_kv_state(pk, "state", job->state);
		break;
	case OPS_EMPTY_RESULT:
		if (strcmp(vmh_method(job->req), "instance.delete") == 0)
			vmh_state_forget(job->inst.name);
		msgpack_pack_map(pk, 0);
		break;
	case OPS_INFO_RESULT:
		vmh_state_notify(job->inst.name, job->state);
		msgpack_pack_map(pk, 5);
		proto_pack_kv_state(pk, "state", job->state);
		/* Port 0 and pid nil when not running, as the qemu driver says. */
		proto_pack_kv_str(pk, "ssh_host", job->ssh_host[0] ? job->ssh_host : NULL);
		proto_pack_kv_int(pk, "ssh_port", job->state == PROTO_STATE_RUNNING ? OPS_SSH_PORT : 0);
		proto_pack_str(pk, "ipv4");
		msgpack_pack_array(pk, job->n_ipv4);
		for (size_t i = 0; i < job->n_ipv4; i++)
			proto_pack_str(pk, job->ipv4[i]);
		proto_pack_str(pk, "pid");
		if (job->pid > 0)
			msgpack_pack_int64(pk, job->pid);
		else
			msgpack_pack_nil(pk);
		break;
	case OPS_SET_RESULT:
		msgpack_pack_map(pk, 0);
		break;
	case OPS_LIST_RESULT:
		msgpack_pack_map(pk, 1);
		proto_pack_str(pk, "instances");
		msgpack_pack_array(pk, job->n);
		for (size_t i = 0; i < job->n; i++) {
			vmh_state_seen(job->names[i], job->states[i]);
			msgpack_pack_map(pk, 3);
			proto_pack_kv_str(pk, "name", job->names[i]);
			proto_pack_kv_state(pk, "state", job->states[i]);
			proto_pack_str(pk, "ipv4");
			msgpack_pack_array(pk, job->list_ipv4[i][0] ? 1 : 0);
			if (job->list_ipv4[i][0])
				proto_pack_str(pk, job->list_ipv4[i]);
		}
		break;
	}
	vmh_done(job->req);
	ops_free(job);
}

/* The end of a job's step on the main loop: answer, or fail with err. */
static void ops_step_done(void *ud, int rc, const char *err)
{
	struct ops_job *job = ud;

	if (rc < 0) {
		vmh_fail(job->req, rc, "%s", err);
		ops_free(job);
		return;
	}
	ops_answer(job);
}

static void ops_qemu_suspend_discarded(void *ud, int rc, const char *err)
{
	struct ops_job *job = ud;
	char path[PATH_MAX];

	if (rc < 0)
		vmh_log(VMH_WARN, "%s: could not delete the qemu driver's saved state from the disk: %s",
			job->inst.name, err);
	vmh_instance_file(&job->inst, PROTO_FILE_SUSPENDED, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT) {
		vmh_fail(job->req, PROTO_E_IO, "%s: cannot remove %s: %s", job->inst.name, path,
			 strerror(errno));
		ops_free(job);
		return;
	}
	vmh_log(VMH_INFO, "%s: discarded the state the qemu driver had suspended", job->inst.name);
	ops_answer(job);
}

/* Main thread, after the work: the steps that run children, then the answer. */
static void ops_done(void *arg)
{
	struct ops_job *job = arg;

	if (job->err) {
		vmh_fail(job->req, job->err, "%s", job->msg);
		ops_free(job);
		return;
	}
	if (job->discard_qemu_suspend) {
		inst_qemu_suspend_discard(&job->inst, ops_qemu_suspend_discarded, job);
		return;
	}
	if (job->kind == OPS_SET_RESULT && strcmp(job->set_key, "disk") == 0) {
		inst_overlay_resize(&job->inst, job->set_value, ops_step_done, job);
		return;
	}
	ops_answer(job);
}

static void ops_spawn(void *ud, enum vmh_accel chosen)
{
	struct ops_job *job = ud;
	int rc = job_spawn(ops_thread, ops_done, job);

	(void)chosen;
	if (rc < 0) {
		vmh_fail(job->req, rc, "cannot start a worker thread");
		ops_free(job);
	}
}

/* Jobs may define domains, whose type follows the accelerator: wait for
 * the probe (a fraction of a second, once per helper) on a local daemon. */
static void ops_run(struct ops_job *job)
{
	if (conn_is_local())
		vmh_accel_when_ready(ops_spawn, job);
	else
		ops_spawn(job, VMH_ACCEL_TCG);
}

/* Requests that only look at the instance claim nothing. */
#define OPS_NO_CLAIM PROTO_STATE_UNKNOWN

/* Parse the common params and claim the instance for the operation (with
 * the state it shows meanwhile); NULL after answering the request if the
 * params are bad or another operation holds the instance. */
static struct ops_job *ops_new(struct vmh_req *req, const msgpack_object *params,
			       void (*work)(struct ops_job *, virConnectPtr), enum ops_kind kind,
			       enum proto_state claim)
{
	struct ops_job *job = calloc(1, sizeof(*job));
	char m[256];

	if (!job) {
		vmh_fail(req, PROTO_E_NOMEM, "out of memory");
		return NULL;
	}
	job->req = req;
	job->work = work;
	job->kind = kind;
	job->wait_for_conn = true;
	job->escalate = true;
	if (vmh_instance_from_req(req, params, "instance", &job->inst) < 0) {
		free(job);
		return NULL;
	}
	if (claim != OPS_NO_CLAIM) {
		int rc = vmh_busy_claim(job->inst.name, claim, m, sizeof(m));

		if (rc < 0) {
			vmh_fail(req, rc, "%s", m);
			ops_free(job);
			return NULL;
		}
		job->claimed = true;
	}
	return job;
}

/* The requests that need nothing but the instance. */
static void ops_new_run(struct vmh_req *req, const msgpack_object *params,
			void (*work)(struct ops_job *, virConnectPtr), enum ops_kind kind,
			enum proto_state claim)
{
	struct ops_job *job = ops_new(req, params, work, kind, claim);

	if (job)
		ops_run(job);
}

static bool ops_timeout(struct ops_job *job, const msgpack_object *params)
{
	int64_t t;
	double d;

	job->timeout = OPS_DEFAULT_STOP_TIMEOUT;
	if (proto_get_int(params, "timeout", &t) == 0)
		job->timeout = (double)t;
	else if (proto_get_double(params, "timeout", &d) == 0)
		job->timeout = d;
	if (job->timeout < 0 || job->timeout > 86400) {
		vmh_fail(job->req, PROTO_E_INVALID_ARGUMENT, "timeout must be between 0 and 86400 seconds");
		ops_free(job);
		return false;
	}
	return true;
}

static void ops_disk_ready(void *ud, int rc, const char *err)
{
	struct ops_job *job = ud;

	if (rc < 0) {
		vmh_fail(job->req, rc, "%s", err);
		ops_free(job);
		return;
	}
	ops_run(job);
}

/* The shared disk first (qemu-img, from the loop), then the libvirt work. */
static void ops_disk_then_run(struct ops_job *job)
{
	inst_overlay_ensure(&job->inst, ops_disk_ready, job);
}

void lvh_instance_create(struct vmh_req *req, const msgpack_object *params)
{
	struct ops_job *job = ops_new(req, params, ops_create_work, OPS_EMPTY_RESULT, PROTO_STATE_STOPPED);
	if (job)
		ops_disk_then_run(job);
}

void lvh_instance_start(struct vmh_req *req, const msgpack_object *params)
{
	struct ops_job *job = ops_new(req, params, ops_start_work, OPS_STATE_RESULT, PROTO_STATE_STARTING);
	if (job)
		ops_disk_then_run(job);
}

void lvh_instance_stop(struct vmh_req *req, const msgpack_object *params)
{
	struct ops_job *job = ops_new(req, params, ops_stop_work, OPS_STATE_RESULT, PROTO_STATE_STOPPING);
	bool force = false;

	if (!job || !ops_timeout(job, params))
		return;
	if (proto_get_bool(params, "force", &force) == PROTO_E_INVALID_ARGUMENT) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'force' must be a boolean");
		ops_free(job);
		return;
	}
	job->force = force;
	if (proto_get_bool(params, "escalate", &job->escalate) == PROTO_E_INVALID_ARGUMENT) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'escalate' must be a boolean");
		ops_free(job);
		return;
	}
	ops_run(job);
}

void lvh_instance_restart(struct vmh_req *req, const msgpack_object *params)
{
	struct ops_job *job = ops_new(req, params, ops_restart_work, OPS_STATE_RESULT, PROTO_STATE_RESTARTING);
	if (job && ops_timeout(job, params))
		ops_disk_then_run(job);
}

void lvh_instance_suspend(struct vmh_req *req, const msgpack_object *params)
{
	ops_new_run(req, params, ops_suspend_work, OPS_STATE_RESULT, PROTO_STATE_SUSPENDING);
}

void lvh_instance_delete(struct vmh_req *req, const msgpack_object *params)
{
	ops_new_run(req, params, ops_delete_work, OPS_EMPTY_RESULT, PROTO_STATE_STOPPING);
}

void lvh_instance_state(struct vmh_req *req, const msgpack_object *params)
{
	ops_new_run(req, params, ops_state_work, OPS_STATE_RESULT, OPS_NO_CLAIM);
}

void lvh_instance_info(struct vmh_req *req, const msgpack_object *params)
{
	ops_new_run(req, params, ops_info_work, OPS_INFO_RESULT, OPS_NO_CLAIM);
}

void lvh_instance_set(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *v = proto_map_get(params, "value");
	struct ops_job *job = ops_new(req, params, ops_set_work, OPS_SET_RESULT, PROTO_STATE_STOPPED);
	char text[64], m[256];
	int rc = 0;

	if (!job)
		return;
	if (proto_get_str(params, "key", job->set_key, sizeof(job->set_key)) < 0 ||
	    (strcmp(job->set_key, "cpus") && strcmp(job->set_key, "memory") &&
	     strcmp(job->set_key, "disk"))) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'key' must be cpus, memory or disk");
		goto out_free;
	}
	if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		job->set_value = v->via.u64;
	else if (v && v->type == MSGPACK_OBJECT_STR && proto_obj_str(v, text, sizeof(text)) == 0)
		rc = strcmp(job->set_key, "cpus") == 0
			     ? (sscanf(text, "%" SCNu64, &job->set_value) == 1 ? 0 : PROTO_E_INVALID_ARGUMENT)
			     : parse_size(text, &job->set_value, m, sizeof(m));
	else
		rc = PROTO_E_INVALID_ARGUMENT;
	if (rc == 0 && strcmp(job->set_key, "cpus") == 0 &&
	    (job->set_value < 1 || job->set_value > PROTO_CPUS_MAX))
		rc = PROTO_E_INVALID_ARGUMENT;
	if (rc == 0 && strcmp(job->set_key, "memory") == 0 && job->set_value < PROTO_MEMORY_MIN)
		rc = PROTO_E_INVALID_ARGUMENT;
	if (rc == 0 && job->set_value == 0)
		rc = PROTO_E_INVALID_ARGUMENT;
	if (rc < 0 && strcmp(job->set_key, "cpus") == 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "cpus: 'value' must be a CPU count from 1 to %d",
			 PROTO_CPUS_MAX);
		goto out_free;
	}
	if (rc < 0) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT,
			 "%s: 'value' must be a byte count or a size like 20G (at least %llu MiB of "
			 "memory)", job->set_key, (unsigned long long)(PROTO_MEMORY_MIN >> 20));
		goto out_free;
	}
	ops_run(job);
	return;
out_free:
	ops_free(job);
}

void lvh_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	struct ops_job *job;
	size_t n;

	if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'instances' must be an array of instance maps");
		return;
	}
	n = arr->via.array.size;
	job = calloc(1, sizeof(*job));
	if (!job)
		goto out_nomem;
	job->req = req;
	job->work = ops_list_work;
	job->kind = OPS_LIST_RESULT;
	/* A daemon that is away makes instances "unknown", not the list fail. */
	job->wait_for_conn = false;
	job->names = calloc(n ? n : 1, sizeof(*job->names));
	job->dirs = calloc(n ? n : 1, sizeof(*job->dirs));
	job->macs = calloc(n ? n : 1, sizeof(*job->macs));
	job->list_ipv4 = calloc(n ? n : 1, sizeof(*job->list_ipv4));
	job->states = calloc(n ? n : 1, sizeof(*job->states));
	if (!job->names || !job->dirs || !job->macs || !job->list_ipv4 || !job->states)
		goto out_nomem;
	for (size_t i = 0; i < n; i++) {
		const msgpack_object *it = &arr->via.array.ptr[i];
		if (proto_get_str(it, "dir", job->dirs[i], sizeof(job->dirs[0])) < 0)
			job->dirs[i][0] = '\0';
		if (proto_get_str(it, "mac", job->macs[i], sizeof(job->macs[0])) < 0)
			job->macs[i][0] = '\0';
		if (proto_get_str(it, "name", job->names[i], sizeof(job->names[0])) < 0) {
			vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "instance %zu of 'instances' has no name",
				 i);
			ops_free(job);
			return;
		}
	}
	job->n = n;
	ops_run(job);
	return;
out_nomem:
	if (job)
		ops_free(job);
	vmh_fail(req, PROTO_E_NOMEM, "out of memory");
}

int lvh_init(const char *scope_dir, const msgpack_object *settings, char *why, size_t whylen)
{
	struct conn_settings s;
	int rc;

	memset(&s, 0, sizeof(s));
	snprintf(s.uri, sizeof(s.uri), "%s",
		 vmh_setting("local.libvirt.uri", geteuid() == 0 ? "qemu:///system" : "qemu:///session"));
	snprintf(s.network, sizeof(s.network), "%s",
		 vmh_setting("local.libvirt.network", LVH_DEFAULT_NETWORK));
	if (vmh_accel_configure_setting("local.libvirt.accel", why, whylen) < 0)
		return PROTO_E_UNAVAILABLE;

	rc = conn_init(&s);
	if (rc < 0) {
		snprintf(why, whylen, "libvirt could not be initialised");
		return PROTO_E_UNAVAILABLE;
	}
	vmh_log(VMH_INFO, "libvirt driver: uri %s, network %s, %s", s.uri, s.network,
		vmh_accel_setting());
	/* The QEMU of a daemon on this machine is the one the probe runs; the
	 * answer is shared with the qemu driver through the scope's folder. */
	if (conn_is_local()) {
		vmh_accel_cache_in(scope_dir);
		vmh_accel_prepare();
	}
	return 0;
}
