/*
 * The domain XML of an instance (dom_xml) and the states libvirt's report
 * maps to (dom_state). Where libvirt itself must read the XML, its
 * in-process test driver does: no daemon.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <libvirt/virterror.h>

#include "lvh.h"

static char *xml;

static void teardown(void)
{
	free(xml);
	xml = NULL;
}

TestSuite(domxml, .fini = teardown);

/* An instance as the broker sends it, with a kernel or not. */
static struct vmh_instance sample(bool kernel)
{
	struct vmh_instance in = {
		.name = "web",
		.dir = "/var/lib/vmctl/scopes/qemu/instances/web",
		.mac = "52:54:00:01:02:03",
		.seed = "/var/lib/vmctl/scopes/qemu/instances/web/cloud-init.iso",
		.cpus = 3,
		.memory = 1536ull << 20,
		.image = {.disk = "/img/base.qcow2", .format = "qcow2"},
	};

	if (kernel) {
		in.image.kernel = "/img/vmlinuz";
		in.image.initrd = "/img/initrd";
		in.image.cmdline = "root=/dev/vda console=ttyS0";
	}
	return in;
}

static const struct dom_xml_opts tcg = {.network = "vmctl"};

static bool has(const char *needle)
{
	return strstr(xml, needle) != NULL;
}

Test(domxml, tcg_is_domain_type_qemu_with_the_maximum_cpu)
{
	struct vmh_instance in = sample(false);

	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect(has("<domain type='qemu'>"), "%s", xml);
	cr_expect(has("<cpu mode='maximum' check='none'/>"), "%s", xml);
	cr_expect_not(has("kvm"), "%s", xml);
}

Test(domxml, kvm_is_domain_type_kvm_with_the_hosts_cpu)
{
	struct vmh_instance in = sample(false);
	struct dom_xml_opts kvm = {.network = "vmctl", .kvm = true};

	xml = dom_xml(&in, &kvm);
	cr_assert_not_null(xml);
	cr_expect(has("<domain type='kvm'>"), "%s", xml);
	cr_expect(has("<cpu mode='host-passthrough' check='none'/>"), "%s", xml);
}

Test(domxml, specs_disk_nic_and_name_come_from_the_instance)
{
	struct vmh_instance in = sample(false);
	struct dom_xml_opts o = {.network = "lab", .uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"};

	xml = dom_xml(&in, &o);
	cr_assert_not_null(xml);
	cr_expect(has("<name>vmctl-web</name>"), "%s", xml);
	cr_expect(has("<uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>"), "%s", xml);
	cr_expect(has("<memory unit='b'>1610612736</memory>"), "%s", xml);
	cr_expect(has("<vcpu placement='static'>3</vcpu>"), "%s", xml);
	cr_expect(has("<source file='/var/lib/vmctl/scopes/qemu/instances/web/disk.qcow2'/>"),
		  "the shared overlay is the disk: %s", xml);
	cr_expect(has("<source network='lab'/>"), "%s", xml);
	cr_expect(has("<mac address='52:54:00:01:02:03'/>"), "%s", xml);
	cr_expect(has("path='/var/lib/vmctl/scopes/qemu/instances/web/console.log'"), "%s", xml);
	cr_expect_not(has("<seclabel"), "only the local system daemon gets one: %s", xml);
}

Test(domxml, no_mac_lets_libvirt_pick_one)
{
	struct vmh_instance in = sample(false);

	in.mac = NULL;
	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect_not(has("<mac "), "%s", xml);
	cr_expect_not(has("<uuid>"), "%s", xml);
}

Test(domxml, the_seed_is_a_readonly_second_disk_only_when_there_is_one)
{
	struct vmh_instance in = sample(false);

	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect(has("<source file='/var/lib/vmctl/scopes/qemu/instances/web/cloud-init.iso'/>\n"
		      "      <target dev='vdb' bus='virtio'/>\n      <readonly/>"),
		  "%s", xml);
	free(xml);
	in.seed = NULL;
	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect_not(has("vdb"), "%s", xml);
	cr_expect_not(has("<readonly/>"), "%s", xml);
}

Test(domxml, a_kernel_boots_directly_with_its_initrd_and_command_line)
{
	struct vmh_instance in = sample(true);

	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect(has("<kernel>/img/vmlinuz</kernel>"), "%s", xml);
	cr_expect(has("<initrd>/img/initrd</initrd>"), "%s", xml);
	cr_expect(has("<cmdline>root=/dev/vda console=ttyS0</cmdline>"), "%s", xml);
	free(xml);
	in = sample(false);
	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect_not(has("<kernel>") || has("<initrd>") || has("<cmdline>"), "%s", xml);
	cr_expect(has("<boot dev='hd'/>"), "%s", xml);
}

Test(domxml, the_local_system_daemon_runs_qemu_as_the_folder_owner)
{
	struct vmh_instance in = sample(false);
	struct dom_xml_opts o = {.network = "vmctl", .static_owner = true, .owner = 1000, .group = 100};

	xml = dom_xml(&in, &o);
	cr_assert_not_null(xml);
	cr_expect(has("<seclabel type='static' model='dac' relabel='no'><label>+1000:+100</label>"
		      "</seclabel>"),
		  "%s", xml);
}

Test(domxml, odd_paths_and_text_are_escaped)
{
	struct vmh_instance in = sample(true);

	in.dir = "/data/a&b/<x>/it's \"q\"";
	in.image.cmdline = "console=ttyS0 msg=<a&b>";
	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	cr_expect(has("<source file='/data/a&amp;b/&lt;x&gt;/it&apos;s &quot;q&quot;/disk.qcow2'/>"),
		  "%s", xml);
	cr_expect(has("<cmdline>console=ttyS0 msg=&lt;a&amp;b&gt;</cmdline>"), "%s", xml);
	cr_expect_not(has("a&b"), "no raw '&' left: %s", xml);
	cr_expect_not(has("<x>"), "no raw '<' left: %s", xml);
}

static void quiet(void *opaque, virErrorPtr err)
{
}

/* What libvirt reads back from the XML, as it reads it (test:///default). */
static char *through_libvirt(const char *text)
{
	virConnectPtr c;
	virDomainPtr d;
	char *back;

	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen("test:///default");
	cr_assert_not_null(c, "libvirt's test driver");
	d = virDomainDefineXML(c, text);
	cr_assert_not_null(d, "libvirt refused the XML: %s\n%s", virGetLastErrorMessage(), text);
	back = virDomainGetXMLDesc(d, 0);
	cr_assert_not_null(back);
	virDomainUndefine(d);
	virDomainFree(d);
	virConnectClose(c);
	return back;
}

Test(domxml, libvirt_reads_the_odd_path_back_as_it_was)
{
	struct vmh_instance in = sample(true);
	char *back;

	in.dir = "/data/a&b/it's";
	xml = dom_xml(&in, &tcg);
	cr_assert_not_null(xml);
	back = through_libvirt(xml);
	/* libvirt writes the same file name back, escaped its own way. */
	cr_expect(strstr(back, "/data/a&amp;b/it's/disk.qcow2") ||
			  strstr(back, "/data/a&amp;b/it&apos;s/disk.qcow2"),
		  "%s", back);
	cr_expect(strstr(back, "<name>vmctl-web</name>"), "%s", back);
	cr_expect(strstr(back, "<kernel>/img/vmlinuz</kernel>"), "%s", back);
	free(back);
}

Test(domxml, the_states_libvirt_reports_map_to_the_protocols)
{
	static const struct {
		int state, reason;
		bool saved;
		enum proto_state want;
	} cases[] = {
		{VIR_DOMAIN_RUNNING, 0, false, PROTO_STATE_RUNNING},
		{VIR_DOMAIN_BLOCKED, 0, false, PROTO_STATE_RUNNING},
		{VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_SAVE, false, PROTO_STATE_SUSPENDING},
		{VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_STARTING_UP, false, PROTO_STATE_STARTING},
		{VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER, false, PROTO_STATE_SUSPENDED},
		{VIR_DOMAIN_SHUTDOWN, 0, false, PROTO_STATE_STOPPING},
		{VIR_DOMAIN_SHUTOFF, 0, false, PROTO_STATE_STOPPED},
		{VIR_DOMAIN_SHUTOFF, 0, true, PROTO_STATE_SUSPENDED},
		{VIR_DOMAIN_CRASHED, 0, false, PROTO_STATE_STOPPED},
		{VIR_DOMAIN_PMSUSPENDED, 0, false, PROTO_STATE_SUSPENDED},
		{VIR_DOMAIN_NOSTATE, 0, false, PROTO_STATE_UNKNOWN},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(dom_state(cases[i].state, cases[i].reason, cases[i].saved), cases[i].want,
			     "libvirt state %d reason %d saved %d: %s", cases[i].state, cases[i].reason,
			     cases[i].saved, proto_state_name(dom_state(cases[i].state, cases[i].reason,
									 cases[i].saved)));
}
