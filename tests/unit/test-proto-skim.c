/* proto_skim: complete, incomplete and limit-breaking MessagePack bytes. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <vmproto/proto.h>

struct buf {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void buf_init(struct buf *b)
{
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static long skim(const struct buf *b, const char **why)
{
	return proto_skim(b->sb.data, b->sb.size, why);
}

/* A request with nested params, all kinds of scalars and a trailing object. */
static void pack_sample(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, 0);
	msgpack_pack_uint64(pk, 1234567890123ull);
	proto_pack_str(pk, "instance.create");
	msgpack_pack_map(pk, 8);
	proto_pack_kv_int(pk, "neg", -300000);
	proto_pack_kv_uint(pk, "big", UINT64_MAX);
	proto_pack_kv_bool(pk, "t", true);
	proto_pack_kv_double(pk, "d", 0.25);
	proto_pack_str(pk, "f");
	msgpack_pack_float(pk, 1.5f);
	proto_pack_str(pk, "bin");
	msgpack_pack_bin(pk, 3);
	msgpack_pack_bin_body(pk, "\0\1\2", 3);
	proto_pack_str(pk, "ext");
	msgpack_pack_ext(pk, 5, 7);
	msgpack_pack_ext_body(pk, "abcde", 5);
	proto_pack_str(pk, "list");
	msgpack_pack_array(pk, 3);
	msgpack_pack_nil(pk);
	msgpack_pack_map(pk, 0);
	msgpack_pack_array(pk, 0);
}

Test(skim, complete_message_gives_its_length)
{
	struct buf b;

	buf_init(&b);
	pack_sample(&b.pk);
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, stops_at_the_end_of_the_first_message)
{
	struct buf b;
	size_t first;

	buf_init(&b);
	pack_sample(&b.pk);
	first = b.sb.size;
	pack_sample(&b.pk);
	cr_assert_eq(skim(&b, NULL), (long)first);
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, every_prefix_is_incomplete_not_wrong)
{
	struct buf b;

	buf_init(&b);
	pack_sample(&b.pk);
	for (size_t n = 0; n < b.sb.size; n++)
		cr_assert_eq(proto_skim(b.sb.data, n, NULL), 0, "prefix of %zu bytes", n);
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, fixext_and_ext_sizes)
{
	/* fixext 1, 2, 4, 8, 16: type byte + payload. */
	static const unsigned char sizes[] = {1, 2, 4, 8, 16};

	for (int i = 0; i < 5; i++) {
		char msg[18] = {(char)(0xd4 + i), 1};
		cr_assert_eq(proto_skim(msg, 2 + sizes[i], NULL), 2 + sizes[i]);
		cr_assert_eq(proto_skim(msg, 1 + sizes[i], NULL), 0);
	}
}

Test(skim, byte_0xc1_is_not_msgpack)
{
	static const char bytes[] = {(char)0x91, (char)0xc1};
	const char *why = NULL;

	cr_assert_eq(proto_skim(bytes, sizeof(bytes), &why), PROTO_E_PROTOCOL);
	cr_assert_not_null(why);
	cr_assert_not_null(strstr(why, "0xc1"));
}

static void nest(struct buf *b, int levels)
{
	for (int i = 0; i < levels - 1; i++)
		msgpack_pack_array(&b->pk, 1);
	msgpack_pack_map(&b->pk, 0); /* an empty container still counts as a level */
}

Test(skim, depth_16_passes_17_does_not)
{
	struct buf b;
	const char *why = NULL;

	buf_init(&b);
	nest(&b, PROTO_MAX_DEPTH);
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);
	buf_init(&b);
	nest(&b, PROTO_MAX_DEPTH + 1);
	cr_assert_eq(skim(&b, &why), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "arrays and maps nested deeper than 16");
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, deep_but_sequential_containers_are_fine)
{
	struct buf b;

	/* 100 sibling arrays each 15 deep: depth goes down as well as up. */
	buf_init(&b);
	msgpack_pack_array(&b.pk, 100);
	for (int i = 0; i < 100; i++)
		nest(&b, PROTO_MAX_DEPTH - 1);
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, array_length_limit)
{
	struct buf b;
	const char *why = NULL;

	buf_init(&b);
	msgpack_pack_array(&b.pk, PROTO_MAX_ARRAY);
	for (int i = 0; i < PROTO_MAX_ARRAY; i++)
		msgpack_pack_nil(&b.pk);
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);
	buf_init(&b);
	msgpack_pack_array(&b.pk, PROTO_MAX_ARRAY + 1);
	cr_assert_eq(skim(&b, &why), PROTO_E_PROTOCOL, "an oversized header alone is refused");
	cr_assert_str_eq(why, "array longer than 65536 elements");
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, map_length_limit)
{
	struct buf b;
	const char *why = NULL;

	buf_init(&b);
	msgpack_pack_map(&b.pk, PROTO_MAX_MAP);
	for (int i = 0; i < PROTO_MAX_MAP; i++) {
		msgpack_pack_int(&b.pk, i);
		msgpack_pack_nil(&b.pk);
	}
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);
	buf_init(&b);
	msgpack_pack_map(&b.pk, PROTO_MAX_MAP + 1);
	cr_assert_eq(skim(&b, &why), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "map larger than 4096 pairs");
	msgpack_sbuffer_destroy(&b.sb);
}

Test(skim, string_bin_ext_length_limits)
{
	struct buf b;
	const char *why = NULL;
	char *blob = calloc(1, PROTO_MAX_STRING);

	buf_init(&b);
	msgpack_pack_str(&b.pk, PROTO_MAX_STRING);
	msgpack_pack_str_body(&b.pk, blob, PROTO_MAX_STRING);
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);

	buf_init(&b);
	msgpack_pack_str(&b.pk, PROTO_MAX_STRING + 1);
	cr_assert_eq(skim(&b, &why), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "string or binary longer than 1 MiB");
	msgpack_sbuffer_destroy(&b.sb);

	buf_init(&b);
	msgpack_pack_bin(&b.pk, PROTO_MAX_STRING + 1);
	cr_assert_eq(skim(&b, NULL), PROTO_E_PROTOCOL);
	msgpack_sbuffer_destroy(&b.sb);

	buf_init(&b);
	msgpack_pack_ext(&b.pk, PROTO_MAX_STRING + 1, 1);
	cr_assert_eq(skim(&b, NULL), PROTO_E_PROTOCOL);
	msgpack_sbuffer_destroy(&b.sb);
	free(blob);
}

Test(skim, message_size_limit)
{
	struct buf b;
	const char *why = NULL;
	char *blob = calloc(1, PROTO_MAX_STRING);

	/* Four 1 MiB strings plus headers: just over 4 MiB. The verdict comes
	 * from the last header, before its bytes are there. */
	buf_init(&b);
	msgpack_pack_array(&b.pk, 4);
	for (int i = 0; i < 3; i++) {
		msgpack_pack_bin(&b.pk, PROTO_MAX_STRING);
		msgpack_pack_bin_body(&b.pk, blob, PROTO_MAX_STRING);
	}
	msgpack_pack_bin(&b.pk, PROTO_MAX_STRING);
	cr_assert_eq(skim(&b, &why), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "message larger than 4 MiB");
	msgpack_sbuffer_destroy(&b.sb);

	/* Exactly 4 MiB passes: [bin 1M, bin 1M, bin 1M, bin rest, nil]. */
	buf_init(&b);
	msgpack_pack_array(&b.pk, 5);
	for (int i = 0; i < 3; i++) {
		msgpack_pack_bin(&b.pk, PROTO_MAX_STRING);
		msgpack_pack_bin_body(&b.pk, blob, PROTO_MAX_STRING);
	}
	size_t rest = PROTO_MAX_MESSAGE - 1 - 3 * (5 + PROTO_MAX_STRING) - 5 - 1;
	msgpack_pack_bin(&b.pk, (uint32_t)rest);
	msgpack_pack_bin_body(&b.pk, blob, rest);
	msgpack_pack_nil(&b.pk);
	cr_assert_eq(b.sb.size, PROTO_MAX_MESSAGE);
	cr_assert_eq(skim(&b, NULL), (long)b.sb.size);
	msgpack_sbuffer_destroy(&b.sb);
	free(blob);
}

/* Many small elements can break the size limit without any single header
 * saying so: an array of 64 arrays of 65536 fixints is legal in shape. */
Test(skim, message_size_limit_from_many_small_elements)
{
	size_t len = 3 + 64 * (5 + 65536);
	char *bytes = malloc(len);
	const char *why = NULL;
	size_t p = 0;

	cr_assert_not_null(bytes);
	cr_assert_gt(len, PROTO_MAX_MESSAGE);
	bytes[p++] = (char)0xdc; /* array 16: 64 */
	bytes[p++] = 0x00;
	bytes[p++] = 64;
	for (int i = 0; i < 64; i++) {
		static const char array32_65536[] = {(char)0xdd, 0x00, 0x01, 0x00, 0x00};

		memcpy(bytes + p, array32_65536, sizeof(array32_65536));
		p += sizeof(array32_65536);
		memset(bytes + p, 0x01, 65536);
		p += 65536;
	}
	cr_assert_eq(proto_skim(bytes, len, &why), PROTO_E_PROTOCOL);
	cr_assert_str_eq(why, "message larger than 4 MiB");
	free(bytes);
}

/* What skim accepts, msgpack-c decodes to the same length. */
Test(skim, agrees_with_the_decoder)
{
	struct buf b;
	msgpack_unpacked u;
	size_t off = 0;

	buf_init(&b);
	pack_sample(&b.pk);
	msgpack_unpacked_init(&u);
	cr_assert_eq(msgpack_unpack_next(&u, b.sb.data, b.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
	cr_assert_eq((long)off, skim(&b, NULL));
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&b.sb);
}

/* Random bytes: whenever skim calls something complete, the decoder agrees
 * on its length; skim never reads past len (ASan builds check that). */
Test(skim, random_bytes_agree_with_the_decoder)
{
	unsigned seed = 12345;
	int complete = 0;

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(rand_r(&seed) % 64) + 1;
		char *bytes = malloc(len);

		for (size_t i = 0; i < len; i++) {
			/* Favour small headers so that some inputs are complete. */
			int r = rand_r(&seed);
			bytes[i] = (char)(r % 3 == 0 ? (r >> 8) % 0x20 + 0x80 : r >> 4);
		}
		long n = proto_skim(bytes, len, NULL);
		if (n > 0) {
			msgpack_unpacked u;
			size_t off = 0;

			complete++;
			msgpack_unpacked_init(&u);
			cr_assert_eq(msgpack_unpack_next(&u, bytes, (size_t)n, &off),
				     MSGPACK_UNPACK_SUCCESS, "round %d", round);
			cr_assert_eq((long)off, n, "round %d", round);
			msgpack_unpacked_destroy(&u);
		} else {
			cr_assert(n == 0 || n == PROTO_E_PROTOCOL);
		}
		free(bytes);
	}
	cr_assert_gt(complete, 1000, "only %d complete inputs: the generator is too weak", complete);
}
