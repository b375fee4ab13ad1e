/*
 * vmctl-bench-helper: the smallest helper the SDK makes. "ping" is answered
 * by the SDK itself, so a round trip through this process measures the
 * protocol library and nothing of a driver. "instances.list" echoes the
 * names it is given as stopped, to measure a large answer.
 *
 * It lives outside libexec/vmctl so that no broker ever offers it as a driver.
 */
#include <vmproto/vmh.h>

static void bench_instances_list(struct vmh_req *req, const msgpack_object *params)
{
	const msgpack_object *arr = proto_map_get(params, "instances");
	msgpack_packer *pk;
	uint32_t n;

	if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) {
		vmh_fail(req, PROTO_E_INVALID_ARGUMENT, "'instances' must be an array of instance maps");
		return;
	}
	n = arr->via.array.size;
	pk = vmh_result(req);
	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "instances");
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *name = proto_map_get(&arr->via.array.ptr[i], "name");

		msgpack_pack_map(pk, 2);
		proto_pack_str(pk, "name");
		if (name && name->type == MSGPACK_OBJECT_STR) {
			msgpack_pack_str(pk, name->via.str.size);
			msgpack_pack_str_body(pk, name->via.str.ptr, name->via.str.size);
		} else {
			msgpack_pack_nil(pk);
		}
		proto_pack_kv_str(pk, "state", "stopped");
	}
	vmh_done(req);
}

static const struct vmh_ops bench_ops = {
	.ops_version = VMH_OPS_VERSION,
	.driver = "bench",
	.scope = "bench",
	.version = "1",
	.instances_list = bench_instances_list,
};

int main(int argc, char **argv)
{
	return vmh_main(&bench_ops, argc, argv);
}
