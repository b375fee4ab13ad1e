/* Global settings: what `vmctl get/set` and the broker see. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmproto/proto.h>

#include "vmcommon.h"

static char tmpdir[] = "/tmp/vmctl-test-settings-XXXXXX";
static char path[256];
static char err[512];

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/settings.yaml", tmpdir);
}

static void teardown(void)
{
	remove_tree(tmpdir);
}

static void write_text(const char *text)
{
	cr_assert_eq(atomic_write_file(path, text, strlen(text), 0600), 0);
}

TestSuite(settings, .init = setup, .fini = teardown);

Test(settings, defaults_apply_when_nothing_is_set)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.driver"), settings_default_driver());
	cr_assert_str_eq(settings_get(&s, "local.qemu.accel"), "auto");
	cr_assert_str_eq(settings_get(&s, "local.libvirt.uri"),
			 geteuid() == 0 ? "qemu:///system" : "qemu:///session");
	cr_assert_str_eq(settings_get(&s, "local.image.mirror"), "");
	cr_assert_str_eq(settings_get(&s, "local.image.refresh"), "6h");
	cr_assert_str_eq(settings_get(&s, "local.image.prune-after"), "30d");
	cr_assert_str_eq(settings_get(&s, "local.bridged-network"), "");
	cr_assert_str_eq(settings_get(&s, "local.privileged-mounts"), "true");
	cr_assert_null(settings_get(&s, "local.nonsense"));
}

/* The seed's default of each platform, whatever the host running the test. */
Test(settings, default_driver_follows_the_seed_on_every_platform)
{
	static const struct {
		struct host_platform p;
		const char *driver;
	} cases[] = {
		{ { HOST_LINUX, true, false }, "qemu" },
		{ { HOST_LINUX, false, false }, "lxd" },
		{ { HOST_MACOS, false, false }, "qemu" },
		{ { HOST_MACOS, true, false }, "qemu" },
		{ { HOST_WINDOWS, true, true }, "hyperv" },
		{ { HOST_WINDOWS, true, false }, "virtualbox" },
	};
	struct settings s = { 0 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_str_eq(driver_default_for(&cases[i].p), cases[i].driver, "case %zu", i);
		host_platform_override(&cases[i].p);
		cr_assert_str_eq(settings_default_driver(), cases[i].driver, "case %zu", i);
		cr_assert_str_eq(settings_get(&s, "local.driver"), cases[i].driver, "case %zu", i);
	}
	host_platform_override(NULL);
}

Test(settings, the_host_platform_is_detected)
{
	struct host_platform p;

	host_platform_detect(&p);
#if defined(__linux__)
	cr_assert_eq(p.os, HOST_LINUX);
#endif
#if defined(__linux__) && defined(__x86_64__)
	cr_assert(p.amd64);
	cr_assert_str_eq(settings_default_driver(), "qemu");
#endif
}

Test(settings, every_known_key_has_a_default_and_is_settable_to_it)
{
	const char *const *keys = settings_known_keys();
	struct settings s = { 0 };
	size_t n = 0;

	for (; keys[n]; n++) {
		const char *def = settings_get(&s, keys[n]);

		cr_assert_not_null(def, "%s has no default", keys[n]);
		cr_assert_eq(settings_set(&s, keys[n], def, err, sizeof(err)), 0, "%s: %s", keys[n], err);
	}
	cr_assert_eq(n, 18);
	settings_free(&s);
}

Test(settings, primary_name_is_an_instance_name_or_empty)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "client.primary-name"), "primary");
	cr_assert_eq(settings_set(&s, "client.primary-name", "dev-box", err, sizeof(err)), 0);
	cr_assert_eq(settings_set(&s, "client.primary-name", "", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "client.primary-name", "Bad_Name", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "client.primary-name") && strstr(err, "no primary instance"), "%s", err);
	cr_assert_str_eq(settings_get(&s, "client.primary-name"), "");
	settings_free(&s);
}

Test(settings, passphrase_is_kept_only_as_a_hash)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.passphrase"), "");
	cr_assert_eq(settings_set(&s, "local.passphrase", "$y$j9T$abc$DEF/ghi.0", err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.passphrase", "hunter2", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "hash") != NULL && strstr(err, "hunter2") == NULL, "%s", err);
	settings_free(&s);
}

Test(settings, default_image_is_what_launch_takes)
{
	static const char *const good[] = { "lts", "24.04", "release:noble", "/srv/disk.qcow2",
					    "file:///srv/disk.qcow2", "https://example.com/d.img" };
	static const char *const bad[] = { "", "images/disk.qcow2", "ftp://example.com/d.img",
					   "a b", "lts\n" };
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.image.default"), "lts");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(settings_set(&s, "local.image.default", good[i], err, sizeof(err)), 0,
			     "%s: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(settings_set(&s, "local.image.default", bad[i], err, sizeof(err)),
			     PROTO_E_INVALID_ARGUMENT, "'%s' was accepted", bad[i]);
		cr_assert(strstr(err, "local.image.default"), "%s", err);
	}
	settings_free(&s);
}

Test(settings, round_trip_keeps_every_value)
{
	struct settings s = { 0 }, back = { 0 };
	struct stat st;

	cr_assert_eq(settings_set(&s, "local.driver", "lxd", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.qemu.accel", "tcg", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.libvirt.uri", "qemu+ssh://host/system", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.image.mirror", "file:///srv/mirror: x", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(settings_set(&s, "local.image.mirror", "http://10.0.0.1:8080/streams", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(settings_set(&s, "local.image.refresh", "30m", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.image.prune-after", "never", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.bridged-network", "Default Switch", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.privileged-mounts", "false", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_save(path, &s), 0);

	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(settings_load(path, &back), 0);
	cr_assert_eq(back.n, 8);
	for (size_t i = 0; i < s.n; i++)
		cr_assert_str_eq(settings_get(&back, s.v[i].key), s.v[i].value, "%s", s.v[i].key);
	settings_free(&s);
	settings_free(&back);
}

Test(settings, empty_value_round_trips_as_empty)
{
	struct settings s = { 0 }, back = { 0 };

	cr_assert_eq(settings_set(&s, "local.image.mirror", "", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_save(path, &s), 0);
	cr_assert_eq(settings_load(path, &back), 0);
	cr_assert_eq(back.n, 1);
	cr_assert_str_eq(settings_get(&back, "local.image.mirror"), "");
	settings_free(&s);
	settings_free(&back);
}

Test(settings, setting_again_replaces_the_value)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.driver", "lxd", err, sizeof(err)), 0);
	cr_assert_eq(settings_set(&s, "local.driver", "libvirt", err, sizeof(err)), 0);
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(settings_get(&s, "local.driver"), "libvirt");
	settings_free(&s);
}

Test(settings, invalid_accel_lists_the_choices)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.qemu.accel", "hvf", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid value \"hvf\" for local.qemu.accel: choose one of auto, kvm, tcg");
}

Test(settings, invalid_boolean_lists_the_choices)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.privileged-mounts", "maybe", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid value \"maybe\" for local.privileged-mounts: choose one of true, false");
}

Test(settings, boolean_is_stored_lower_case)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.privileged-mounts", "FALSE", err, sizeof(err)), 0);
	cr_assert_str_eq(settings_get(&s, "local.privileged-mounts"), "false");
	settings_free(&s);
}

Test(settings, lxd_keys_have_defaults_and_are_checked)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.lxd.socket"), "");
	cr_assert_str_eq(settings_get(&s, "local.lxd.instance-type"), "auto");
	cr_assert_eq(settings_set(&s, "local.lxd.instance-type", "Container", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.lxd.instance-type"), "container");
	cr_assert_eq(settings_set(&s, "local.lxd.instance-type", "jail", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid value \"jail\" for local.lxd.instance-type: choose one of auto, "
			      "vm, container");
	cr_assert_eq(settings_set(&s, "local.lxd.socket", "/run/lxd/unix.socket", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.lxd.socket"), "/run/lxd/unix.socket");
	cr_assert_eq(settings_set(&s, "local.lxd.socket", "unix.socket", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "absolute path"), "%s", err);
	settings_free(&s);
}

Test(settings, hyperv_keys_have_defaults_and_are_checked)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.hyperv.powershell"), "");
	cr_assert_str_eq(settings_get(&s, "local.hyperv.switch"), "");
	cr_assert_eq(settings_set(&s, "local.hyperv.powershell",
				  "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", err,
				  sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.hyperv.powershell", "/opt/ps/powershell", err,
				  sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_set(&s, "local.hyperv.powershell", "powershell.exe", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "absolute path of powershell.exe"), "%s", err);
	cr_assert_eq(settings_set(&s, "local.hyperv.switch", "Default Switch", err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.hyperv.switch"), "Default Switch");
	cr_assert_eq(settings_set(&s, "local.hyperv.switch", "a';Remove-Item", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	settings_free(&s);
}

Test(settings, invalid_durations_are_refused)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.image.refresh", "soon", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "invalid value \"soon\" for local.image.refresh: use a number with a unit s, m, h, d "
			      "or w (e.g. 30m, 6h, 7d), or \"never\"");
	cr_assert_eq(settings_set(&s, "local.image.prune-after", "30", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "for local.image.prune-after"), "message: %s", err);
}

Test(settings, invalid_urls_are_refused)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.image.mirror", "ftp://x/", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "use an http://, https:// or file:// URL"), "message: %s", err);
	cr_assert_eq(settings_set(&s, "local.image.mirror", "mirror.example", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert_eq(settings_set(&s, "local.libvirt.uri", "system", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "qemu:///system"), "message: %s", err);
	cr_assert_eq(s.n, 0);
}

Test(settings, bridged_network_refuses_control_characters)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "local.bridged-network", "eth0\n", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "local.bridged-network"), "message: %s", err);
}

Test(settings, bridged_network_takes_only_network_names)
{
	static const char *const good[] = { "eth0", "br-lan", "enp3s0", "vmbr0.100", "virbr_0",
					    "Default Switch", "" };
	static const char *const bad[][2] = {
		{ "$(id)", "'$' cannot be in a network name" },
		{ "br0;reboot", "';' cannot be in a network name" },
		{ "br0,helper=/x", "',' cannot be in a network name" },
		{ "`id`", "'`' cannot be in a network name" },
		{ "-br0", "start and end with a letter or digit" },
		{ "br 0 ", "start and end with a letter or digit" },
		{ "a  b", "two spaces in a row" },
		{ "br\xc3\xa9", "byte 0xc3 cannot be in a network name" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "more than 64" },
	};
	struct settings s = { 0 };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(settings_set(&s, "local.bridged-network", good[i], err, sizeof(err)), 0,
			     "%s: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(settings_set(&s, "local.bridged-network", bad[i][0], err, sizeof(err)),
			     PROTO_E_INVALID_ARGUMENT, "%s was taken", bad[i][0]);
		cr_assert(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
		cr_assert(strstr(err, "invalid value"), "%s: %s", bad[i][0], err);
	}
	/* the last good value stays */
	cr_assert_str_eq(settings_get(&s, "local.bridged-network"), "");
	settings_free(&s);
}

Test(settings, http_mirrors_must_be_folder_urls_of_a_host)
{
	static const char *const good[] = { "http://10.0.0.1:8080/", "https://cloud-images.ubuntu.com",
					    "https://mirror.example/ubuntu/images%20x/",
					    "http://[::1]:8080/streams" };
	static const char *const bad[][2] = {
		{ "http://user:secret@mirror.example/", "user name or password" },
		{ "http://mirror.example/?x=1", "query or fragment" },
		{ "http://mirror.example/a#b", "query or fragment" },
		{ "http:///streams", "no host" },
		{ "http://:80/", "no host" },
		{ "http://mirror.example:99999/", "above 65535" },
		{ "http://mirror.example:x/", "not a number" },
		{ "http://mir_ror.example/", "host name with a character" },
		{ "http://[zz]/", "IPv6" },
		{ "http://mirror.example/%zz", "two hex digits" },
		{ "http://mirror.example/\"x\"", "character that URLs do not have" },
		{ "file://relative/path", "no absolute path" },
	};
	struct settings s = { 0 };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert_eq(settings_set(&s, "local.image.mirror", good[i], err, sizeof(err)), 0,
			     "%s: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(settings_set(&s, "local.image.mirror", bad[i][0], err, sizeof(err)),
			     PROTO_E_INVALID_ARGUMENT, "%s was taken", bad[i][0]);
		cr_assert(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
	}
	settings_free(&s);
}

Test(settings, a_file_mirror_must_be_a_simplestreams_folder)
{
	char dir[512], url[600], index[700];
	struct settings s = { 0 }, back = { 0 };

	cr_assert_eq(settings_set(&s, "local.image.mirror", "file:///etc/shadow", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "/etc/shadow is not a folder"), "%s", err);
	cr_assert_eq(settings_set(&s, "local.image.mirror", "file:///etc", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "/etc holds no readable releases/streams/v1/index.json"), "%s", err);
	snprintf(url, sizeof(url), "file://%s/none", tmpdir);
	cr_assert_eq(settings_set(&s, "local.image.mirror", url, err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "No such file or directory"), "%s", err);
	cr_assert_eq(s.n, 0, "a refused mirror was stored");

	/* a tree as tools/publish-streams.py writes it, in a folder with a space */
	snprintf(dir, sizeof(dir), "%s/my mirror/releases/streams/v1", tmpdir);
	cr_assert_eq(mkdir_p(dir, 0700), 0);
	snprintf(index, sizeof(index), "%s/index.json", dir);
	cr_assert_eq(atomic_write_file(index, "{}", 2, 0600), 0);
	snprintf(url, sizeof(url), "file://%s/my%%20mirror/", tmpdir);
	cr_assert_eq(settings_set(&s, "local.image.mirror", url, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(settings_save(path, &s), 0);

	/* a mirror folder gone since does not make the file unreadable */
	snprintf(dir, sizeof(dir), "%s/my mirror", tmpdir);
	remove_tree(dir);
	cr_assert_eq(settings_load(path, &back), 0);
	cr_assert_str_eq(settings_get(&back, "local.image.mirror"), url);
	settings_free(&s);
	settings_free(&back);
}

Test(settings, unknown_key_is_refused)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_set(&s, "x", "1", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert_str_eq(err, "unknown setting \"x\"");
}

Test(settings, driver_aliases_are_stored_canonical)
{
	struct settings s = { 0 }, back = { 0 };

	cr_assert_eq(settings_set(&s, "local.driver", "hyper-v", err, sizeof(err)), 0);
	cr_assert_str_eq(settings_get(&s, "local.driver"), "hyperv");
	cr_assert_eq(settings_set(&s, "local.driver", "vbox", err, sizeof(err)), 0);
	cr_assert_str_eq(settings_get(&s, "local.driver"), "virtualbox");
	cr_assert_eq(settings_save(path, &s), 0);
	cr_assert_eq(settings_load(path, &back), 0);
	cr_assert_str_eq(settings_get(&back, "local.driver"), "virtualbox");
	settings_free(&s);
	settings_free(&back);
}

/* Which drivers exist is up to the helpers installed: any driver name is
 * taken, the seed's aliases resolved and letter case ignored. */
Test(settings, any_driver_name_is_taken_in_canonical_form)
{
	struct settings s = { 0 };
	char buf[DRIVER_NAME_MAX + 1];

	cr_assert_eq(settings_set(&s, "local.driver", "Xen", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.driver"), "xen");
	cr_assert_eq(settings_set(&s, "local.driver", "toy-2_b", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.driver"), "toy-2_b");
	settings_free(&s);
	cr_assert_eq(driver_canonical("Hyper-V", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "hyperv");
	cr_assert_eq(driver_canonical("VBox", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "virtualbox");
	cr_assert_eq(driver_canonical("virtualbox", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "virtualbox");
	cr_assert_str_eq(driver_alias("virtualbox", 0), "vbox");
	cr_assert_null(driver_alias("virtualbox", 1));
	cr_assert_str_eq(driver_alias("hyperv", 0), "hyper-v");
	cr_assert_null(driver_alias("qemu", 0));
	cr_assert_eq(driver_canonical("QEMU", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "qemu");
	cr_assert(driver_name_valid("libvirt"));
	cr_assert_not(driver_name_valid("Libvirt"), "canonical names are lower case");
}

Test(settings, a_driver_name_that_cannot_name_a_helper_is_refused)
{
	static const char *const bad[] = {
		"", "../qemu", "qemu/kvm", "Xen Server", "2fast", "-x", "a.b",
		"abcdefghijklmnopqrstuvwxyz789012", /* 32 characters */
	};
	struct settings s = { 0 };
	char buf[DRIVER_NAME_MAX + 1], want[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(driver_canonical(bad[i], buf, sizeof(buf)), PROTO_E_INVALID_ARGUMENT, "%s", bad[i]);
		cr_assert_eq(settings_set(&s, "local.driver", bad[i], err, sizeof(err)), PROTO_E_INVALID_ARGUMENT,
			     "%s", bad[i]);
		snprintf(want, sizeof(want), "invalid value \"%s\" for local.driver: %s", bad[i], DRIVER_NAME_RULE);
		cr_assert_str_eq(err, want);
	}
	cr_assert_eq(s.n, 0);
	cr_assert_eq(driver_canonical("abcdefghijklmnopqrstuvwxyz78901", buf, sizeof(buf)), 0, "31 characters");
}

Test(settings, missing_file_loads_empty)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_load(path, &s), 0);
	cr_assert_eq(s.n, 0);
}

Test(settings, malformed_file_is_refused_with_its_line)
{
	struct settings s = { 0 };

	write_text("local.driver: qemu\nlocal.qemu.accel: tcg: kvm\n");
	cr_assert_eq(settings_load_err(path, &s, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, path) == err, "message: %s", err);
	cr_assert(strstr(err, ": line 2, column 22: mapping values are not allowed"), "message: %s", err);
	cr_assert_eq(s.n, 0);
	cr_assert_null(s.v);
}

Test(settings, invalid_value_in_file_is_refused_with_its_line)
{
	struct settings s = { 0 };
	char want[512];

	write_text("local.driver: qemu\nlocal.driver: lxd\n");
	cr_assert_eq(settings_load_err(path, &s, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	snprintf(want, sizeof(want), "%s: line 2, column 1: local.driver is set twice", path);
	cr_assert_str_eq(err, want);

	write_text("local.driver: qemu/kvm\n");
	cr_assert_eq(settings_load_err(path, &s, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	snprintf(want, sizeof(want), "%s: line 1, column 15: invalid value \"qemu/kvm\" for local.driver: %s",
		 path, DRIVER_NAME_RULE);
	cr_assert_str_eq(err, want);
}

Test(settings, wrong_shapes_in_file_are_refused)
{
	static const char *const bad[] = {
		"- local.driver\n",
		"local.driver: [qemu]\n",
		"local.driver: {a: b}\n",
		"? [a]\n: b\n",
		"nonsense: 1\n",
		"local.qemu.accel: &x tcg\nlocal.driver: *x\n",
		"local.driver: qemu\n---\nlocal.driver: lxd\n",
		"just text\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct settings s = { 0 };

		write_text(bad[i]);
		err[0] = '\0';
		cr_assert_eq(settings_load_err(path, &s, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT, "accepted: %s",
			     bad[i]);
		cr_assert(strstr(err, ": line "), "message for %s: %s", bad[i], err);
		cr_assert_eq(s.n, 0);
	}
}

Test(settings, comments_and_empty_file_are_fine)
{
	struct settings s = { 0 };

	write_text("");
	cr_assert_eq(settings_load(path, &s), 0);
	cr_assert_eq(s.n, 0);
	write_text("# nothing yet\n");
	cr_assert_eq(settings_load(path, &s), 0);
	cr_assert_eq(s.n, 0);
	write_text("# driver\nlocal.driver: libvirt # shared scope\n");
	cr_assert_eq(settings_load(path, &s), 0);
	cr_assert_str_eq(settings_get(&s, "local.driver"), "libvirt");
	settings_free(&s);
}

Test(settings, oversized_file_is_refused)
{
	struct settings s = { 0 };
	size_t n = (1u << 20) + 1;
	char *big = malloc(n);
	char want[512];

	cr_assert_not_null(big);
	memset(big, '#', n);
	cr_assert_eq(atomic_write_file(path, big, n, 0600), 0);
	free(big);
	cr_assert_eq(settings_load_err(path, &s, err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	snprintf(want, sizeof(want), "%s: the file is larger than 1048576 bytes", path);
	cr_assert_str_eq(err, want);
}

Test(settings, unreadable_path_is_an_io_error)
{
	struct settings s = { 0 };

	cr_assert_eq(settings_load_err(tmpdir, &s, err, sizeof(err)), PROTO_E_IO);
	cr_assert(strstr(err, "cannot read: Is a directory"), "message: %s", err);
}

Test(settings, libvirt_accel_takes_the_values_of_qemu_accel)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.libvirt.accel"), "auto");
	cr_assert_eq(settings_set(&s, "local.libvirt.accel", "TCG", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.libvirt.accel"), "tcg");
	cr_assert_eq(settings_set(&s, "local.libvirt.accel", "qemu", err, sizeof(err)), PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "local.libvirt.accel"), "%s", err);
	settings_free(&s);
}

Test(settings, virtualbox_manage_is_an_absolute_path_or_empty)
{
	struct settings s = { 0 };

	cr_assert_str_eq(settings_get(&s, "local.virtualbox.manage"), "");
	cr_assert_eq(settings_set(&s, "local.virtualbox.manage", "/opt/vbox/VBoxManage", err,
				  sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(settings_get(&s, "local.virtualbox.manage"), "/opt/vbox/VBoxManage");
	cr_assert_eq(settings_set(&s, "local.virtualbox.manage", "VBoxManage", err, sizeof(err)),
		     PROTO_E_INVALID_ARGUMENT);
	cr_assert(strstr(err, "absolute path of VBoxManage"), "%s", err);
	settings_free(&s);
}
