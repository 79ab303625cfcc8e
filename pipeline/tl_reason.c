/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "tl_reason.h"

static const char *const reason_names[] = {
#define X_(sym, name, desc) name,
	TL_REASON_LIST(X_)
#undef X_
};

static const char *const reason_descs[] = {
#define X_(sym, name, desc) desc,
	TL_REASON_LIST(X_)
#undef X_
};

const char *
tl_reason_name(enum tl_reason r)
{
	return (unsigned)r < TL_REASON_MAX ? reason_names[r] : "invalid_reason";
}

const char *
tl_reason_desc(enum tl_reason r)
{
	return (unsigned)r < TL_REASON_MAX ? reason_descs[r] : "invalid reason";
}

int
tl_reason_by_name(const char *name)
{
	for (int r = 0; r < TL_REASON_MAX; r++)
		if (strcmp(reason_names[r], name) == 0)
			return r;
	return -1;
}
