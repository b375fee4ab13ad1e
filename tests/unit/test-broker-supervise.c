/*
 * The broker's helper supervision, seen the way a user sees it: the real
 * vmctld and vmctl binaries, with a scripted helper (Python, on the real
 * protocol) that can be told to crash, hang or write garbage on a given
 * method. Each test asserts on what vmctl prints and on the states it lists.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"

#define PYTHON "/usr/bin/python3"

/* A helper for any driver named by its file name (vmctl-DRIVER-helper): the
 * qemu, libvirt and twin drivers say they have the scope qemu, the others
 * one of their own; qemu and toy have suspend.
 * $FAKE_DIR/mode holds "METHOD crash|hang|garbage|slow|badstate|notifybad"
 * lines (slow: answer after 2 s; badstate answers a state that is not one,
 * in each entry of a list; notifybad sends a state notification with one
 * before the answer), and "instance.info exits": SSH on a closed port, then
 * a state notification that the VM stopped. */
static const char fake_helper[] =
	"#!" PYTHON "\n"
	"import sys, os, json, signal, time, msgpack\n"
	"DRV = os.path.basename(sys.argv[0])[6:-7]\n"
	"SCOPE = 'qemu' if DRV in ('qemu', 'libvirt', 'twin') else DRV\n"
	"FEATS = ['suspend'] if DRV in ('qemu', 'toy') else []\n"
	"if sys.argv[1:] == ['--describe']:\n"
	"    print('driver %s\\nscope %s\\nversion 9.9\\nfeatures %s' % (DRV, SCOPE, ','.join(FEATS)))\n"
	"    sys.exit(0)\n"
	"D = os.environ['FAKE_DIR']\n"
	"SF = os.path.join(D, 'states-' + SCOPE)\n"
	"try:\n"
	"    states = json.load(open(SF))\n"
	"except Exception:\n"
	"    states = {}\n"
	"def mode(method):\n"
	"    try:\n"
	"        for line in open(os.path.join(D, 'mode')):\n"
	"            k, _, v = line.strip().partition(' ')\n"
	"            if k == method:\n"
	"                return v\n"
	"    except OSError:\n"
	"        pass\n"
	"    return 'ok'\n"
	"unp = msgpack.Unpacker(raw=False)\n"
	"out = sys.stdout.buffer\n"
	"sys.stderr.write('fake %s helper up\\n' % DRV)\n"
	"sys.stderr.flush()\n"
	"while True:\n"
	"    data = os.read(0, 65536)\n"
	"    if not data:\n"
	"        break\n"
	"    unp.feed(data)\n"
	"    for msg in unp:\n"
	"        if msg[0] != 0:\n"
	"            continue\n"
	"        _, mid, method, params = msg\n"
	"        m = mode(method)\n"
	"        if m == 'hang':\n"
	"            continue\n"
	"        if m == 'garbage':\n"
	"            out.write(b'\\xc1\\xc1')\n"
	"            out.flush()\n"
	"            continue\n"
	"        if m == 'crash':\n"
	"            os.kill(os.getpid(), signal.SIGKILL)\n"
	"        if m == 'slow':\n"
	"            time.sleep(2)\n"
	"        name = params.get('instance', {}).get('name')\n"
	"        res = {}\n"
	"        if method == 'hello':\n"
	"            res = dict(version=1, driver=DRV, scope=SCOPE, helper_version='9.9',\n"
	"                       usable=True, why='', features=FEATS)\n"
	"        elif method == 'instances.list':\n"
	"            res = dict(instances=[dict(name=i['name'], state=states.get(i['name'], 'stopped'))\n"
	"                                  for i in params['instances']])\n"
	"        elif method in ('instance.start', 'instance.restart'):\n"
	"            states[name] = 'running'\n"
	"            res = dict(state='running')\n"
	"        elif method == 'instance.stop':\n"
	"            states[name] = 'stopped'\n"
	"            res = dict(state='stopped')\n"
	"        elif method == 'instance.suspend':\n"
	"            states[name] = 'suspended'\n"
	"            res = dict(state='suspended')\n"
	"        elif method == 'instance.info':\n"
	"            res = dict(state=states.get(name, 'stopped'), ssh_host='127.0.0.1',\n"
	"                       ssh_port=1 if m == 'exits' else 0, ipv4=[], pid=0)\n"
	"        elif method == 'shutdown':\n"
	"            out.write(msgpack.packb([1, mid, None, {}]))\n"
	"            out.flush()\n"
	"            sys.exit(0)\n"
	"        if m == 'badstate':\n"
	"            for e in res.get('instances', [res]):\n"
	"                e['state'] = 'running\\n; rm -rf ~'\n"
	"        if m == 'notifybad':\n"
	"            out.write(msgpack.packb([2, 'state', dict(name=name, old='running', new='exploded')]))\n"
	"        json.dump(states, open(SF, 'w'))\n"
	"        out.write(msgpack.packb([1, mid, None, res]))\n"
	"        out.flush()\n"
	"        if m == 'exits':\n"
	"            time.sleep(1)\n"
	"            states[name] = 'stopped'\n"
	"            json.dump(states, open(SF, 'w'))\n"
	"            out.write(msgpack.packb([2, 'state', dict(name=name, old='running', new='stopped')]))\n"
	"            out.flush()\n";

static char test_data[256];
static char helper_dir[300];
static pid_t broker_pid;

/* Output of the last vmctl run. */
static char out[16384], err[16384];
static int status;

static void write_text(const char *path, const char *text, mode_t mode)
{
	cr_assert_eq(atomic_write_file(path, text, strlen(text), mode), 0, "writing %s", path);
}

static void set_mode(const char *text)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/mode", helper_dir);
	write_text(path, text, 0644);
}

static void read_into(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (!f)
		return;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Run vmctl ARGS...; fills out, err and status (exit code). */
static void vmctl(const char *args)
{
	char cmd[2048], o[400], e[400];
	int rc;

	snprintf(o, sizeof(o), "%s/out", helper_dir);
	snprintf(e, sizeof(e), "%s/err", helper_dir);
	snprintf(cmd, sizeof(cmd), "VMCTL_NO_AUTOSTART=1 %s %s >%s 2>%s </dev/null", VMCTL_BIN, args,
		 o, e);
	rc = system(cmd);
	status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
	read_into(o, out, sizeof(out));
	read_into(e, err, sizeof(err));
}

/* Start vmctl ARGS... in the background, its stderr in helper_dir/TAG.err. */
static pid_t vmctl_bg(const char *tag, const char *args)
{
	char cmd[2048];
	pid_t pid;

	snprintf(cmd, sizeof(cmd), "VMCTL_NO_AUTOSTART=1 exec %s %s >%s/%s.out 2>%s/%s.err </dev/null",
		 VMCTL_BIN, args, helper_dir, tag, helper_dir, tag);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Wait until the stderr of vmctl_bg(TAG) holds text. */
static void bg_wait_for(const char *tag, const char *text)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/%s.err", helper_dir, tag);
	for (int i = 0; i < 600; i++) {
		read_into(path, err, sizeof(err));
		if (strstr(err, text))
			return;
		usleep(50 * 1000);
	}
	cr_assert(0, "vmctl %s never printed '%s': %s", tag, text, err);
}

/* Wait for vmctl_bg(TAG) to end: its status, and its stderr in err. */
static void bg_end(const char *tag, pid_t pid)
{
	char path[400];
	int rc;

	cr_assert_eq(waitpid(pid, &rc, 0), pid);
	status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
	snprintf(path, sizeof(path), "%s/%s.err", helper_dir, tag);
	read_into(path, err, sizeof(err));
}

/* A disk the image check accepts: a qcow2 version 3 header. */
static void write_fake_disk(char *path, size_t len)
{
	static const char head[] = "QFI\xfb\0\0\0\3";
	char disk[112] = {0};

	memcpy(disk, head, sizeof(head) - 1);
	snprintf(path, len, "%s/disk.qcow2", test_data);
	cr_assert_eq(atomic_write_file(path, disk, sizeof(disk), 0644), 0);
}

/* The STATE column of NAME in `vmctl list` ("" when not listed); the test
 * fails if `vmctl list` itself fails, so that "not listed" never passes
 * for a broker that is gone. */
static const char *listed_state(const char *name)
{
	static char state[32];
	char *line;

	vmctl("list");
	cr_assert_eq(status, 0, "vmctl list failed: %s", err);
	state[0] = '\0';
	for (line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		char n[64], s[32];

		if (sscanf(line, "%63s %31s", n, s) == 2 && strcmp(n, name) == 0) {
			snprintf(state, sizeof(state), "%s", s);
			break;
		}
	}
	return state;
}

static void add_instance(struct registry *reg, const char *name)
{
	struct instance_record *rec = registry_add(reg, name);
	char dir[512];

	cr_assert_not_null(rec);
	rec->state = PROTO_STATE_STOPPED;
	record_set(&rec->image, "file:///nowhere/disk.qcow2");
	record_set(&rec->image_disk, "/nowhere/disk.qcow2");
	record_set(&rec->image_format, "qcow2");
	record_set(&rec->mac, "52:54:00:00:00:01");
	record_set(&rec->created, "2026-11-27T10:00:00Z");
	rec->cpus = 1;
	rec->memory = 1ull << 30;
	rec->disk = 5ull << 30;
	snprintf(dir, sizeof(dir), "%s/scopes/qemu/instances/%s", test_data, name);
	cr_assert_eq(mkdir_p(dir, 0700), 0);
}

static void start_broker(void)
{
	char sock[400];

	snprintf(sock, sizeof(sock), "%s/vmctld.sock", test_data);
	broker_pid = fork();
	cr_assert_geq(broker_pid, 0);
	if (broker_pid == 0) {
		char log[400];
		int fd;

		snprintf(log, sizeof(log), "%s/vmctld.log", test_data);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		execl(VMCTLD_BIN, "vmctld", "--foreground", (char *)NULL);
		_exit(127);
	}
	/* Ready when the socket answers (and the helper said hello). */
	for (int i = 0; i < 100; i++) {
		vmctl("version");
		if (status == 0 && strstr(out, "9.9"))
			return;
		usleep(100 * 1000);
	}
	cr_assert(0, "vmctld did not come up: %s", err);
}

static void setup(void)
{
	char path[400];
	struct registry reg = {0};

	if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import msgpack' 2>/dev/null") != 0)
		cr_skip_test("needs " PYTHON " with msgpack (python3-msgpack)");
	snprintf(test_data, sizeof(test_data), "/tmp/test-broker-supervise.XXXXXX");
	cr_assert_not_null(mkdtemp(test_data));
	snprintf(helper_dir, sizeof(helper_dir), "%s/helpers", test_data);
	cr_assert_eq(mkdir_p(helper_dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/vmctl-qemu-helper", helper_dir);
	write_text(path, fake_helper, 0755);
	snprintf(path, sizeof(path), "%s/vmctl-lxd-helper", helper_dir);
	write_text(path, fake_helper, 0755);
	/* Drivers the broker knows only from their helpers. */
	snprintf(path, sizeof(path), "%s/vmctl-toy-helper", helper_dir);
	write_text(path, fake_helper, 0755);
	snprintf(path, sizeof(path), "%s/vmctl-twin-helper", helper_dir);
	write_text(path, fake_helper, 0755);
	set_mode("");
	setenv("VMCTL_DATA", test_data, 1);
	setenv("VMCTL_HELPER_PATH", helper_dir, 1);
	setenv("FAKE_DIR", helper_dir, 1);
	setenv("VMCTL_HELPER_DEADLINE", "3", 1);

	snprintf(path, sizeof(path), "%s/settings.yaml", test_data);
	write_text(path, "local.driver: qemu\n", 0600);
	add_instance(&reg, "alpha");
	add_instance(&reg, "beta");
	snprintf(path, sizeof(path), "%s/scopes/qemu/instances.yaml", test_data);
	cr_assert_eq(registry_save(path, &reg), 0);
	registry_free(&reg);
	start_broker();
}

static void teardown(void)
{
	if (broker_pid > 0) {
		kill(broker_pid, SIGTERM);
		waitpid(broker_pid, NULL, 0);
		broker_pid = 0;
	}
	if (test_data[0] && getenv("KEEP_TEST_DATA") == NULL)
		remove_tree(test_data);
}

TestSuite(broker_supervise, .init = setup, .fini = teardown, .timeout = 90);

Test(broker_supervise, a_helper_crash_is_explained_and_the_helper_restarted)
{
	set_mode("instance.start crash\n");
	vmctl("start alpha");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "the qemu helper crashed (killed by signal 9) during instance.start; "
			      "it has been restarted"),
		  "stderr: %s", err);
	set_mode("");
	vmctl("start alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "Running");
}

Test(broker_supervise, a_protocol_violation_kills_the_helper)
{
	set_mode("instance.stop garbage\n");
	vmctl("stop alpha");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "broke the protocol"), "stderr: %s", err);
	cr_assert(strstr(err, "during instance.stop"), "stderr: %s", err);
	set_mode("");
	vmctl("stop alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
}

Test(broker_supervise, a_hung_helper_is_killed_at_the_deadline)
{
	set_mode("instance.suspend hang\n");
	vmctl("suspend alpha");
	cr_assert_eq(status, 5, "a hang is a timeout (exit 5); stderr: %s", err);
	cr_assert(strstr(err, "did not answer instance.suspend within 3 s; it has been killed and "
			      "restarted"),
		  "stderr: %s", err);
	set_mode("");
	vmctl("suspend alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "Suspended");
}

/* The broker's own deadline answers (how fast is a figure for the
 * benchmarks, not for a test on a shared machine). */
Test(broker_supervise, list_answers_with_unknown_states_when_the_helper_hangs)
{
	set_mode("instances.list hang\n");
	vmctl("list");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert(strstr(out, "alpha") && strstr(out, "Unknown"), "stdout: %s", out);
	cr_assert(strstr(err, "unknown"), "a warning says the states are unknown: %s", err);
}

Test(broker_supervise, one_unknown_name_fails_the_whole_request)
{
	vmctl("start alpha ghost");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "ghost"), "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "Stopped", "alpha was started anyway");
}

Test(broker_supervise, a_missing_helper_leaves_the_driver_unchanged)
{
	/* A driver of the seed's table whose hypervisor this host lacks (every
	 * seed driver's helper is built, and the build's libexec/vmctl is
	 * searched too): refused with its helper's reason. */
	vmctl("set local.driver=virtualbox");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "cannot switch to the virtualbox driver") &&
		  strstr(err, "local.driver is still qemu"), "stderr: %s", err);
	/* A driver nobody installed: named, with where helpers were looked for. */
	vmctl("set local.driver=xen");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "vmctl-xen-helper was not found") && strstr(err, "local.driver is still qemu"),
		  "stderr: %s", err);
	cr_assert(strstr(err, helper_dir) && strstr(err, "the drivers installed are ") &&
		  strstr(err, "qemu") && strstr(err, "virtualbox"), "stderr: %s", err);
	vmctl("get local.driver");
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, "qemu\n");
}

Test(broker_supervise, a_name_that_cannot_name_a_helper_is_refused)
{
	vmctl("set local.driver=../qemu");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "invalid value \"../qemu\" for local.driver: a driver name starts with a "
			      "letter"),
		  "stderr: %s", err);
	vmctl("get local.driver");
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, "qemu\n");
}

/* Which drivers exist, and their scopes, is what the helpers say: toy is in
 * no table of the broker's. */
Test(broker_supervise, a_driver_known_only_from_its_helper_can_be_switched_to)
{
	char dir[512];

	vmctl("set local.driver=toy");
	cr_assert_eq(status, 0, "stderr: %s", err);
	vmctl("get local.driver");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(out, "toy\n");
	cr_assert_str_eq(listed_state("alpha"), "", "the toy scope starts empty");
	/* Once its hello is answered. */
	for (int i = 0; i < 50 && (vmctl("version"), !strstr(out, "(helper 9.9)")); i++)
		usleep(100 * 1000);
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert(strstr(out, "driver    toy (helper 9.9)"), "stdout: %s", out);
	snprintf(dir, sizeof(dir), "%s/scopes/toy", test_data);
	cr_assert_eq(access(dir, F_OK), 0, "%s was not made", dir);
	vmctl("set local.driver=qemu");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "Stopped");
}

Test(broker_supervise, a_driver_has_the_scope_its_helper_names)
{
	vmctl("start alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	vmctl("set local.driver=twin");
	cr_assert_eq(status, 0, "stderr: %s", err);
	/* Same scope, same instances: stopped for the other driver, which
	 * starts them again (it cannot resume the first one's saved state). */
	for (int i = 0; i < 50 && strcmp(listed_state("alpha"), "Running") != 0; i++)
		usleep(100 * 1000);
	cr_assert_str_eq(listed_state("alpha"), "Running");
	cr_assert_str_eq(listed_state("beta"), "Stopped");
	vmctl("version");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert(strstr(out, "driver    twin (helper 9.9)"), "stdout: %s", out);
}

Test(broker_supervise, a_refusal_names_the_drivers_known_from_their_helpers)
{
	/* toy is described when it is switched to; lxd lacks suspend. */
	vmctl("set local.driver=toy");
	cr_assert_eq(status, 0, "stderr: %s", err);
	vmctl("set local.driver=lxd");
	cr_assert_eq(status, 0, "stderr: %s", err);
	vmctl("suspend --all");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "suspend is not supported by the lxd driver; drivers that have it: qemu, ") &&
			  strstr(err, ", toy"),
		  "stderr: %s", err);
}

Test(broker_supervise, switching_drivers_parks_and_restores_instances)
{
	vmctl("start alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	vmctl("set local.driver=lxd");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "", "the lxd scope starts empty: %s", out);
	vmctl("list --all-scopes");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert(strstr(out, "alpha") && strstr(out, "Suspended"), "stdout: %s", out);
	/* lxd has no suspend: refused, naming who has it. */
	vmctl("suspend --all");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "not supported by the lxd driver") && strstr(err, "qemu"),
		  "stderr: %s", err);
	vmctl("set local.driver=qemu");
	cr_assert_eq(status, 0, "stderr: %s", err);
	for (int i = 0; i < 50 && strcmp(listed_state("alpha"), "Running") != 0; i++)
		usleep(100 * 1000);
	cr_assert_str_eq(listed_state("alpha"), "Running");
	cr_assert_str_eq(listed_state("beta"), "Stopped");
}

Test(broker_supervise, delete_recover_purge)
{
	char dir[512];

	vmctl("start alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	vmctl("delete alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "Deleted");
	/* A deleted instance still holds its name. */
	snprintf(dir, sizeof(dir), "%s/disk.img", test_data);
	write_text(dir, "not really a disk", 0644);
	snprintf(dir, sizeof(dir), "launch %s/disk.img --name alpha", test_data);
	vmctl(dir);
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "alpha") && strstr(err, "recover"), "stderr: %s", err);
	vmctl("start alpha");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "deleted"), "stderr: %s", err);
	vmctl("recover alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "Stopped");
	vmctl("delete --purge alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("alpha"), "", "alpha is still listed");
	snprintf(dir, sizeof(dir), "%s/scopes/qemu/instances/alpha", test_data);
	cr_assert_neq(access(dir, F_OK), 0, "%s is still there", dir);
}

Test(broker_supervise, a_folder_removed_behind_our_back_does_not_break_list)
{
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/scopes/qemu/instances/beta", test_data);
	cr_assert_eq(remove_tree(dir), 0);
	vmctl("list");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert(strstr(out, "alpha"), "stdout: %s", out);
	cr_assert_str_eq(listed_state("beta"), "Unknown");
	cr_assert(strstr(err, "beta") && strstr(err, "missing"), "stderr: %s", err);
	vmctl("delete --purge beta");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("beta"), "");
}

/* Straight to the socket, past vmctl's own checks: a name too long for
 * the broker's buffer is refused for its length, not as "not a string". */
Test(broker_supervise, a_huge_name_sent_to_the_broker_is_refused_for_its_length)
{
	static const char client[] =
		"#!" PYTHON "\n"
		"import socket, sys, msgpack\n"
		"s = socket.socket(socket.AF_UNIX)\n"
		"s.connect(sys.argv[1])\n"
		"s.sendall(msgpack.packb([0, 1, 'start', {'names': ['a' * 300]}]))\n"
		"u = msgpack.Unpacker(raw=False)\n"
		"while True:\n"
		"    u.feed(s.recv(65536))\n"
		"    for m in u:\n"
		"        if m[0] == 1:\n"
		"            print(m[2][1])\n"
		"            sys.exit(0)\n";
	char path[400], cmd[1400];
	int rc;

	snprintf(path, sizeof(path), "%s/raw-client", helper_dir);
	write_text(path, client, 0755);
	snprintf(cmd, sizeof(cmd), "timeout 20 %s %s/vmctld.sock >%s/out 2>&1", path, test_data,
		 helper_dir);
	rc = system(cmd);
	snprintf(path, sizeof(path), "%s/out", helper_dir);
	read_into(path, out, sizeof(out));
	cr_assert_eq(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, 0, "client: %s", out);
	cr_assert(strstr(out, "names are at most 63 characters long (this one has 300)"), "answer: %s",
		  out);
}

/* A forced stop while the helper starts the VM of a launch: the launch ends
 * when the start is answered, saying it was cancelled, and the stop then runs
 * (it used to be refused: busy until the launch's --timeout). */
Test(broker_supervise, stop_force_cancels_a_launch_in_flight)
{
	char disk[400], args[600];
	pid_t launch;

	write_fake_disk(disk, sizeof(disk));
	set_mode("instance.start slow\n");
	snprintf(args, sizeof(args), "launch %s --name gamma --timeout 300", disk);
	launch = vmctl_bg("launch", args);
	bg_wait_for("launch", "Starting gamma");
	vmctl("stop --force gamma");
	cr_assert_eq(status, 0, "stop --force: %s", err);
	bg_end("launch", launch);
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "the launch of gamma was cancelled by vmctl stop --force"), "stderr: %s",
		  err);
	cr_assert_str_eq(listed_state("gamma"), "Stopped");
	vmctl("delete --purge gamma");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("gamma"), "");
}

/* The helper says the VM stopped while the launch waits for SSH: the launch
 * fails at once (not at its --timeout), naming what happened, and keeps the
 * instance, which nothing holds any more. */
Test(broker_supervise, a_launch_whose_vm_stops_fails_at_once)
{
	char disk[400], args[600];
	pid_t launch;

	write_fake_disk(disk, sizeof(disk));
	set_mode("instance.info exits\n");
	snprintf(args, sizeof(args), "launch %s --name delta --timeout 300", disk);
	launch = vmctl_bg("launch", args);
	bg_end("launch", launch);
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "delta stopped before it answered SSH") &&
		  strstr(err, "no longer running") && strstr(err, "instance is kept"),
		  "stderr: %s", err);
	cr_assert_str_eq(listed_state("delta"), "Stopped");
	set_mode("");
	vmctl("delete --purge delta");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_str_eq(listed_state("delta"), "");
}

/* The registry file and the broker's log, for what must never reach them. */
static void read_registry_and_log(char *reg, size_t reglen, char *log, size_t loglen)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/scopes/qemu/instances.yaml", test_data);
	read_into(path, reg, reglen);
	snprintf(path, sizeof(path), "%s/vmctld.log", test_data);
	read_into(path, log, loglen);
}

static char registry_text[16384], log_text[65536];

Test(broker_supervise, a_state_outside_the_protocol_in_an_answer_kills_the_helper)
{
	set_mode("instance.start badstate\n");
	vmctl("start alpha");
	cr_assert_neq(status, 0, "stdout: %s", out);
	cr_assert(strstr(err, "the qemu helper broke the protocol (state \"running\\n; rm -rf ~\" is not an "
			      "instance state) and was killed during instance.start; it has been restarted"),
		  "stderr: %s", err);
	set_mode("");
	read_registry_and_log(registry_text, sizeof(registry_text), log_text, sizeof(log_text));
	cr_assert_null(strstr(registry_text, "rm -rf"), "the registry took it:\n%s", registry_text);
	cr_assert(strstr(log_text, "broke the protocol (state \"running\\n; rm -rf ~\""), "log:\n%s", log_text);
	/* The restarted helper's answers are stored again. */
	for (int i = 0; i < 50 && strcmp(listed_state("alpha"), "Running") != 0; i++)
		usleep(100 * 1000);
	cr_assert_str_eq(listed_state("alpha"), "Running");
	cr_assert_null(strstr(out, "rm -rf"), "stdout: %s", out);
}

Test(broker_supervise, a_state_outside_the_protocol_in_a_notification_kills_the_helper)
{
	vmctl("start alpha");
	cr_assert_eq(status, 0, "stderr: %s", err);
	set_mode("instance.stop notifybad\n");
	vmctl("stop alpha");
	cr_assert_neq(status, 0);
	cr_assert(strstr(err, "broke the protocol (new \"exploded\" is not an instance state, in a state "
			      "notification)"),
		  "stderr: %s", err);
	set_mode("");
	read_registry_and_log(registry_text, sizeof(registry_text), log_text, sizeof(log_text));
	cr_assert_null(strstr(registry_text, "exploded"), "the registry took it:\n%s", registry_text);
	vmctl("list");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_null(strstr(out, "exploded"), "stdout: %s", out);
	cr_assert_null(strstr(out, "Exploded"), "stdout: %s", out);
}

Test(broker_supervise, a_state_outside_the_protocol_in_a_list_is_not_shown)
{
	set_mode("instances.list badstate\n");
	vmctl("list");
	cr_assert_eq(status, 0, "stderr: %s", err);
	cr_assert_null(strstr(out, "rm -rf"), "stdout: %s", out);
	cr_assert(strstr(out, "alpha") && strstr(out, "Unknown"), "stdout: %s", out);
	cr_assert(strstr(err, "broke the protocol"), "stderr: %s", err);
	set_mode("");
	read_registry_and_log(registry_text, sizeof(registry_text), log_text, sizeof(log_text));
	cr_assert_null(strstr(registry_text, "rm -rf"), "the registry took it:\n%s", registry_text);
	for (int i = 0; i < 50 && strcmp(listed_state("alpha"), "Stopped") != 0; i++)
		usleep(100 * 1000);
	cr_assert_str_eq(listed_state("alpha"), "Stopped");
}
