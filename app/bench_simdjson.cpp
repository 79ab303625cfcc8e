// SPDX-License-Identifier: BSD-3-Clause
// simdjson On-Demand reference for `tapline bench`. Note what it does not do that
// tl_json_extract does: On-Demand validates only what it visits (skipped values are
// only bracket-matched; UTF-8 is checked for the whole input in stage 1), and it never
// detects duplicate keys. It is a speed reference, not a strictness equal.
#include <cstring>
#include <string>
#include <vector>

#include <simdjson.h>

extern "C" {
#include "tl_bench_ref.h"
#include "tl_json.h"
}

using simdjson::error_code;
using simdjson::NO_SUCH_FIELD;
// On-Demand is header-only and picks its kernel at compile time, so this one file is
// built with -march=haswell (see app/meson.build); tl_bench_simdjson checks the CPU
// before any of it runs.
namespace ondemand = simdjson::ondemand;

namespace {

struct col_path {
	std::vector<std::string> segs;
	int type;
	bool required;
};

bool
extract_one(ondemand::parser &parser, const std::vector<col_path> &cols, const uint8_t *p,
		size_t len, size_t cap, uint64_t &sink)
{
	ondemand::document doc;

	if (parser.iterate(p, len, cap).get(doc))
		return false;
	ondemand::object root;
	if (doc.get_object().get(root))
		return false;
	for (const col_path &c : cols) {
		ondemand::value v;
		error_code e = root.find_field_unordered(c.segs[0]).get(v);

		for (size_t k = 1; !e && k < c.segs.size(); k++)
			e = v.find_field_unordered(c.segs[k]).get(v);
		if (e == NO_SUCH_FIELD) {
			if (c.required)
				return false;
			continue;
		}
		if (e)
			return false;
		if (v.is_null()) {
			if (c.required)
				return false;
			continue;
		}
		switch (c.type) {
		case TL_COL_STRING: {
			std::string_view s;
			if (v.get_string().get(s))
				return false;
			sink += s.size();
			break;
		}
		case TL_COL_ANY: {
			ondemand::json_type t;
			if (v.type().get(t))
				return false;
			if (t == ondemand::json_type::string) {
				std::string_view s;
				if (v.get_string().get(s))
					return false;
				sink += s.size();
			} else if (t == ondemand::json_type::object) {
				ondemand::object o;
				std::string_view raw;
				if (v.get_object().get(o) || o.raw_json().get(raw))
					return false;
				sink += raw.size();
			} else if (t == ondemand::json_type::array) {
				ondemand::array a;
				std::string_view raw;
				if (v.get_array().get(a) || a.raw_json().get(raw))
					return false;
				sink += raw.size();
			} else {
				sink += std::string_view(v.raw_json_token()).size();
			}
			break;
		}
		case TL_COL_INT64: {
			int64_t x;
			if (v.get_int64().get(x))
				return false;
			sink += (uint64_t)x;
			break;
		}
		case TL_COL_UINT64: {
			uint64_t x;
			if (v.get_uint64().get(x))
				return false;
			sink += x;
			break;
		}
		case TL_COL_FLOAT64: {
			double x;
			if (v.get_double().get(x))
				return false;
			sink += (uint64_t)x;
			break;
		}
		case TL_COL_BOOL: {
			bool x;
			if (v.get_bool().get(x))
				return false;
			sink += x;
			break;
		}
		case TL_COL_DATETIME: {
			std::string_view s;
			int64_t ns;
			if (v.get_string().get(s) ||
					tl_json_parse_time((const uint8_t *)s.data(), s.size(), &ns) != 0)
				return false;
			sink += (uint64_t)ns;
			break;
		}
		default:
			return false;
		}
	}
	return true;
}

} // namespace

extern "C" uint64_t
tl_bench_simdjson(const struct tl_schema *s, const struct tl_bench_events *ev)
{
	std::vector<col_path> cols;
	ondemand::parser parser;
	uint64_t ok = 0, sink = 0;

	for (uint32_t i = 0; i < tl_schema_n_cols(s); i++) {
		const struct tl_col_def *c = tl_schema_col(s, i);
		col_path cp;
		std::string path(c->path);
		size_t start = 0, dot;

		while ((dot = path.find('.', start)) != std::string::npos) {
			cp.segs.push_back(path.substr(start, dot - start));
			start = dot + 1;
		}
		cp.segs.push_back(path.substr(start));
		cp.type = c->type;
		cp.required = c->required;
		cols.push_back(cp);
	}
	if (!__builtin_cpu_supports("avx2") || parser.allocate(65536))
		return UINT64_MAX;
	for (uint32_t i = 0; i < ev->n; i++) {
		const uint8_t *p = ev->buf + ev->off[i];
		size_t cap = ev->size + simdjson::SIMDJSON_PADDING - ev->off[i];

		ok += extract_one(parser, cols, p, ev->len[i], cap, sink) ? 1 : 0;
	}
	volatile uint64_t keep = sink;
	(void)keep;
	return ok;
}
