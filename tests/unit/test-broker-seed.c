/*
 * The cloud-init texts the broker puts in a NoCloud seed: our user-data
 * (parsed back as YAML through cloudinit_validate), the MIME multipart that
 * merges a user's --cloud-init, and the meta-data.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define KEY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZrZXlmb3J0ZXN0aW5nb25seQ vmctl"

Test(broker_seed, user_data_is_cloud_config_with_the_key)
{
	char *ud = seed_user_data(KEY);
	char err[256];

	cr_assert_not_null(ud);
	cr_assert_eq(strncmp(ud, "#cloud-config\n", 14), 0);
	cr_assert_eq(cloudinit_validate(ud, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(strstr(ud, "name: ubuntu"));
	cr_assert_not_null(strstr(ud, "NOPASSWD:ALL"));
	cr_assert_not_null(strstr(ud, "manage_etc_hosts: true"));
	/* Once for the user, once at the top level. */
	char *first = strstr(ud, KEY);
	cr_assert_not_null(first);
	cr_assert_not_null(strstr(first + 1, KEY));
	free(ud);
}

Test(broker_seed, odd_key_text_is_quoted)
{
	char *ud = seed_user_data("ssh-ed25519 AAAA it's: #odd");
	char err[256];

	cr_assert_not_null(ud);
	cr_assert_eq(cloudinit_validate(ud, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(strstr(ud, "'ssh-ed25519 AAAA it''s: #odd'"));
	free(ud);
}

Test(broker_seed, no_user_data_means_ours_alone)
{
	char *out = seed_combine("#cloud-config\na: 1\n", NULL, 1);

	cr_assert_str_eq(out, "#cloud-config\na: 1\n");
	free(out);
	out = seed_combine("#cloud-config\na: 1\n", "  \n", 1);
	cr_assert_str_eq(out, "#cloud-config\na: 1\n");
	free(out);
}

Test(broker_seed, user_data_is_merged_as_multipart)
{
	const char *user = "#cloud-config\npackages: [htop]\n";
	char *out = seed_combine("#cloud-config\nusers: [default]\n", user, 0x1234);
	char *ours, *theirs, *end;

	cr_assert_not_null(out);
	cr_assert_eq(strncmp(out, "Content-Type: multipart/mixed; boundary=\"==vmctl-00001234==\"", 60), 0,
		     "%s", out);
	ours = strstr(out, "--==vmctl-00001234==\nContent-Type: text/cloud-config");
	cr_assert_not_null(ours);
	theirs = strstr(ours + 1, "--==vmctl-00001234==\nContent-Type: text/cloud-config");
	cr_assert_not_null(theirs);
	cr_assert_not_null(strstr(theirs, "Merge-Type: list(append)+dict(no_replace,recurse_list)+str()\n"));
	cr_assert_not_null(strstr(theirs, user));
	/* Ours comes first and carries no merge type of its own. */
	cr_assert_null(memmem(ours, (size_t)(theirs - ours), "Merge-Type", 10));
	end = strstr(out, "--==vmctl-00001234==--\n");
	cr_assert_not_null(end);
	cr_assert_gt(end, theirs);
	free(out);
}

Test(broker_seed, boundary_never_occurs_in_the_parts)
{
	const char *user = "#cloud-config\nwrite_files: [{path: /x, content: '==vmctl-00000007=='}]\n";
	char *out = seed_combine("#cloud-config\n", user, 7);
	char boundary[64];
	const char *b = strstr(out, "boundary=\"");

	cr_assert_not_null(b);
	b += 10;
	snprintf(boundary, sizeof(boundary), "%.*s", (int)strcspn(b, "\""), b);
	cr_assert_str_neq(boundary, "==vmctl-00000007==");
	cr_assert_null(strstr(user, boundary));
	free(out);
}

Test(broker_seed, meta_data)
{
	char *md = seed_meta_data("web", "web-0badcafe");

	cr_assert_str_eq(md, "instance-id: web-0badcafe\nlocal-hostname: web\n");
	free(md);
}

/* ---- network-config ---- */

static struct network_record test_nets[] = {
	{ "br0", "auto", "52:54:00:aa:00:01" },
	{ "lab", "manual", "52:54:00:aa:00:02" },
};

Test(broker_seed, network_config_matches_every_nic_by_mac)
{
	char *nc = seed_network_config("52:54:00:12:34:56", test_nets, 2);
	char err[256];

	cr_assert_not_null(nc);
	cr_assert_str_eq(nc, "version: 2\n"
			     "ethernets:\n"
			     "  default:\n"
			     "    match:\n"
			     "      macaddress: \"52:54:00:12:34:56\"\n"
			     "    set-name: eth0\n"
			     "    dhcp4: true\n"
			     "  extra0:\n"
			     "    match:\n"
			     "      macaddress: \"52:54:00:aa:00:01\"\n"
			     "    set-name: extra0\n"
			     "    dhcp4: true\n"
			     "    dhcp4-overrides:\n"
			     "      route-metric: 200\n"
			     "    optional: true\n"
			     "  extra1:\n"
			     "    match:\n"
			     "      macaddress: \"52:54:00:aa:00:02\"\n"
			     "    set-name: extra1\n");
	/* YAML whose root is a mapping, as cloud-init requires. */
	cr_assert_eq(cloudinit_validate(nc, err, sizeof(err)), 0, "%s", err);
	free(nc);
}

Test(broker_seed, network_config_file_only_with_extra_networks)
{
	char dir[] = "/tmp/vmctl-test-seed-XXXXXX", path[64], err[256];
	struct instance_record rec = { 0 };
	char *text = NULL;
	size_t len;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/network-config", dir);
	rec.mac = "52:54:00:12:34:56";
	rec.networks = test_nets;
	rec.n_networks = 1;
	cr_assert_eq(seed_write_network_config(dir, &rec, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(read_file(path, 4096, &text, &len), 0);
	cr_assert_not_null(strstr(text, "macaddress: \"52:54:00:aa:00:01\""));
	cr_assert_null(strstr(text, "extra1"));
	free(text);
	/* None left over from an earlier seed in that folder. */
	rec.n_networks = 0;
	cr_assert_eq(seed_write_network_config(dir, &rec, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(read_file(path, 4096, &text, &len), PROTO_E_NOT_FOUND);
	remove_tree(dir);
}
