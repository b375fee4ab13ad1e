/*
 * Extra networks in the broker: what launch accepts in `networks` and
 * `bridged`, the MACs it makes up, the clone's new MACs, and the addresses
 * read back from a guest's `ip -4 address`.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

static struct network_record *nets;
static size_t n_nets;
static char err[512];
static msgpack_unpacked unpacked;
static msgpack_sbuffer packed; /* the unpacked strings point into it */

static void teardown(void)
{
	network_records_free(nets, n_nets);
	nets = NULL;
	n_nets = 0;
	msgpack_unpacked_destroy(&unpacked);
	msgpack_sbuffer_destroy(&packed);
}

static void setup(void)
{
	msgpack_unpacked_init(&unpacked);
	msgpack_sbuffer_init(&packed);
	err[0] = '\0';
}

TestSuite(broker_networks, .init = setup, .fini = teardown);

/* Params {networks: [{name, mode?, mac?}...], bridged}; NULL fields left out. */
static const msgpack_object *params(const char *const (*v)[3], size_t n, bool bridged)
{
	msgpack_packer pk;

	msgpack_sbuffer_destroy(&packed);
	msgpack_sbuffer_init(&packed);
	msgpack_packer_init(&pk, &packed, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	proto_pack_kv_bool(&pk, "bridged", bridged);
	proto_pack_str(&pk, "networks");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++) {
		msgpack_pack_map(&pk, (v[i][0] != NULL) + (v[i][1] != NULL) + (v[i][2] != NULL));
		if (v[i][0])
			proto_pack_kv_str(&pk, "name", v[i][0]);
		if (v[i][1])
			proto_pack_kv_str(&pk, "mode", v[i][1]);
		if (v[i][2])
			proto_pack_kv_str(&pk, "mac", v[i][2]);
	}
	msgpack_unpacked_destroy(&unpacked);
	msgpack_unpacked_init(&unpacked);
	cr_assert_eq(msgpack_unpack_next(&unpacked, packed.data, packed.size, NULL),
		     MSGPACK_UNPACK_SUCCESS);
	return &unpacked.data;
}

static void assert_refused(const char *const (*v)[3], size_t n, bool bridged, const char *setting,
			   const char *part)
{
	int rc = networks_from_params(params(v, n, bridged), setting, &nets, &n_nets, err,
				      sizeof(err));

	cr_assert_eq(rc, PROTO_E_INVALID_ARGUMENT, "accepted, %zu networks", n_nets);
	cr_assert_null(nets);
	cr_assert_not_null(strstr(err, part), "message: %s", err);
}

static bool generated_mac(const char *mac)
{
	return mac && strlen(mac) == 17 && !strncmp(mac, "52:54:00:", 9) &&
	       validate_mac(mac, err, sizeof(err)) == 0;
}

Test(broker_networks, names_modes_and_macs_are_kept_and_filled_in)
{
	const char *const v[][3] = {
		{ "br0", NULL, NULL },
		{ "lab", "manual", "52:54:00:AB:CD:EF" },
		{ "br0", "auto", NULL },
	};

	cr_assert_eq(networks_from_params(params(v, 3, false), "", &nets, &n_nets, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(n_nets, 3);
	cr_assert_str_eq(nets[0].name, "br0");
	cr_assert_str_eq(nets[0].mode, "auto");
	cr_assert(generated_mac(nets[0].mac), "%s", nets[0].mac);
	cr_assert_str_eq(nets[1].mode, "manual");
	cr_assert_str_eq(nets[1].mac, "52:54:00:ab:cd:ef");
	cr_assert(generated_mac(nets[2].mac), "%s", nets[2].mac);
	cr_assert_str_neq(nets[0].mac, nets[2].mac);
}

Test(broker_networks, no_networks_is_fine)
{
	cr_assert_eq(networks_from_params(params(NULL, 0, false), NULL, &nets, &n_nets, err,
					  sizeof(err)), 0);
	cr_assert_eq(n_nets, 0);
	cr_assert_null(nets);
}

Test(broker_networks, bridged_uses_the_setting)
{
	const char *const v[][3] = { { "bridged", "manual", NULL } };

	cr_assert_eq(networks_from_params(params(v, 1, true), "br-lan", &nets, &n_nets, err,
					  sizeof(err)), 0, "%s", err);
	cr_assert_eq(n_nets, 2);
	cr_assert_str_eq(nets[0].name, "br-lan");
	cr_assert_str_eq(nets[0].mode, "auto");
	cr_assert_str_eq(nets[1].name, "br-lan");
	cr_assert_str_eq(nets[1].mode, "manual");
}

Test(broker_networks, bridged_without_the_setting_says_how_to_set_it)
{
	assert_refused(NULL, 0, true, "", "vmctl set local.bridged-network=BRIDGE");
	teardown();
	setup();
	const char *const v[][3] = { { "bridged", NULL, NULL } };

	assert_refused(v, 1, false, NULL, "vmctl set local.bridged-network=BRIDGE");
}

Test(broker_networks, bad_modes_macs_and_names_are_refused)
{
	const char *const mode[][3] = { { "br0", "dhcp", NULL } };
	const char *const syntax[][3] = { { "br0", NULL, "52:54:00:12:34" } };
	const char *const hex[][3] = { { "br0", NULL, "52:54:00:12:34:zz" } };
	const char *const multicast[][3] = { { "br0", NULL, "01:00:5e:00:00:01" } };
	const char *const dup[][3] = { { "br0", NULL, "52:54:00:00:00:01" },
				       { "br1", NULL, "52:54:00:00:00:01" } };
	const char *const dupcase[][3] = { { "br0", NULL, "52:54:00:00:00:0a" },
					   { "br1", NULL, "52:54:00:00:00:0A" } };
	const char *const noname[][3] = { { NULL, "auto", NULL } };
	const char *const longname[][3] = { { "a-very-long-bridge", NULL, NULL } };
	const char *const slash[][3] = { { "../br0", NULL, NULL } };

	assert_refused(mode, 1, false, NULL, "network mode 'dhcp' is not auto or manual");
	teardown(), setup();
	assert_refused(syntax, 1, false, NULL, "'52:54:00:12:34' is not a MAC address");
	teardown(), setup();
	assert_refused(hex, 1, false, NULL, "is not a MAC address");
	teardown(), setup();
	assert_refused(multicast, 1, false, NULL, "is a multicast address");
	teardown(), setup();
	assert_refused(dup, 2, false, NULL, "MAC address 52:54:00:00:00:01 is given to two networks");
	teardown(), setup();
	assert_refused(dupcase, 2, false, NULL, "is given to two networks");
	teardown(), setup();
	assert_refused(noname, 1, false, NULL, "needs the name of a host network");
	teardown(), setup();
	assert_refused(longname, 1, false, NULL, "is not a host network name (at most 15");
	teardown(), setup();
	assert_refused(slash, 1, false, NULL, "is not a host network name");
}

Test(broker_networks, at_most_the_helper_limit)
{
	const char *v[BROKER_MAX_NETWORKS + 1][3];

	for (size_t i = 0; i <= BROKER_MAX_NETWORKS; i++) {
		v[i][0] = "br0";
		v[i][1] = v[i][2] = NULL;
	}
	cr_assert_eq(networks_from_params(params((const char *const(*)[3])v, BROKER_MAX_NETWORKS,
						 false), NULL, &nets, &n_nets, err, sizeof(err)), 0);
	teardown(), setup();
	assert_refused((const char *const(*)[3])v, BROKER_MAX_NETWORKS + 1, false, NULL,
		       "at most 16 extra networks");
}

Test(broker_networks, clones_get_new_macs_for_the_same_networks)
{
	struct network_record src[] = {
		{ "br0", "auto", "52:54:00:00:00:01" },
		{ "lab", "manual", "52:54:00:00:00:02" },
	};

	cr_assert_eq(networks_copy_new_macs(&nets, src, 2, "52:54:00:00:00:03"), 0);
	n_nets = 2;
	for (size_t i = 0; i < 2; i++) {
		cr_assert_str_eq(nets[i].name, src[i].name);
		cr_assert_str_eq(nets[i].mode, src[i].mode);
		cr_assert(generated_mac(nets[i].mac));
		cr_assert(!networks_mac_taken(src, 2, nets[i].mac));
		cr_assert_str_neq(nets[i].mac, "52:54:00:00:00:03");
	}
	cr_assert_str_neq(nets[0].mac, nets[1].mac);
}

Test(broker_networks, guest_addresses_from_ip_output)
{
	static const char oneline[] =
		"2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\\       "
		"valid_lft 86381sec preferred_lft 86381sec\n"
		"3: extra0    inet 10.77.3.120/24 metric 200 brd 10.77.3.255 scope global extra0\\"
		"       valid_lft forever preferred_lft forever\n";
	static const char plain[] =
		"3: extra0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq state UP\n"
		"    inet 192.168.5.9/24 brd 192.168.5.255 scope global extra0\n"
		"    inet 192.168.5.10/24 scope global secondary extra0\n";
	char **addrs;
	size_t n;

	cr_assert_eq(networks_parse_guest_ipv4(oneline, &addrs, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(addrs[0], "10.0.2.15");
	cr_assert_str_eq(addrs[1], "10.77.3.120");
	networks_addrs_free(addrs, n);

	cr_assert_eq(networks_parse_guest_ipv4(plain, &addrs, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(addrs[1], "192.168.5.10");
	networks_addrs_free(addrs, n);

	cr_assert_eq(networks_parse_guest_ipv4("sh: ip: not found\ninet 999.1.1.1/8\n", &addrs, &n), 0);
	cr_assert_eq(n, 0);
	networks_addrs_free(addrs, n);
}
