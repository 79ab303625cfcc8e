/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Tenant provisioning: the ClickHouse DDL of every routed database and the users and
 * grants of the profile's `routing.users`, so each tenant's database has its own access.
 *
 * Users come in two forms, one per ClickHouse generation:
 *  - XML (TL_GRANTS_XML) for servers without SQL user management, such as Debian's 18.16:
 *    a users.d file (`<yandex><profiles>..</profiles><users>..</users></yandex>`) the
 *    server merges into its users.xml and re-reads without a restart. Each user gets its
 *    password_sha256_hex, its networks (an IPv4 block as address/dotted mask: 18.16 ignores
 *    the prefix length of "a.b.c.d/N" and would admit anyone), a settings profile, the
 *    `default` quota and
 *    allow_databases with exactly its databases. Two settings profiles are defined, both
 *    inheriting `default`: tapline_readonly (readonly=1: SELECT only, no setting can be
 *    changed, no table functions) for `access: read`, and tapline_write (allow_ddl=0)
 *    for `access: write`. Caveat of 18.16: it applies a query's own settings without
 *    checking them, so a write user can lift allow_ddl=0 and run DDL inside its own
 *    databases; allow_databases (other tenants) and readonly=1 do hold.
 *  - SQL (TL_GRANTS_SQL) for releases with SQL access control (20.5 and later): per user
 *    CREATE USER IF NOT EXISTS, ALTER USER (so a changed password or network list is
 *    applied on re-runs), REVOKE ALL ON *.* (the profile is the source of truth) and
 *    GRANT SELECT, or SELECT, INSERT, on each of its databases.
 *
 * Every name that reaches the output (user, database, profile) is [A-Za-z0-9_] and every
 * network an IP address or CIDR block, checked again here whatever tl_route_build already
 * checked, so a profile cannot inject XML or SQL; hashes are 64 hex digits, written in
 * lowercase.
 *
 * Passwords: password_sha256 is used as given; password_file (trailing CR/LF removed) and
 * password_env are read and hashed (SHA-256) when generating. The clear-text password is
 * wiped from memory after hashing and never printed; an empty password is refused.
 *
 * Thread-safety: reentrant (password_env reads the environment: not while another thread
 * changes it).
 */
#ifndef TL_GRANTS_H
#define TL_GRANTS_H

#include <stddef.h>
#include <stdio.h>

#include "tl_route.h"
#include "tl_schema.h"

/** Settings profiles the XML form defines and assigns. */
#define TL_GRANTS_PROFILE_READ "tapline_readonly"
#define TL_GRANTS_PROFILE_WRITE "tapline_write"

/** Longest password read from password_file or password_env. */
#define TL_GRANTS_PASSWORD_MAX 1023

/** Output form of tl_grants_users(). */
enum tl_grants_format {
	TL_GRANTS_XML = 0, /**< users.d file (ClickHouse 18.16 and later) */
	TL_GRANTS_SQL,     /**< SQL statements (ClickHouse 20.5 and later) */
	TL_GRANTS_FORMAT_MAX
};

/** "xml", "sql", NULL (indexed by the enum). */
extern const char *const tl_grants_format_names[];

/**
 * The SHA-256 of user @p u's password, from its one password source.
 *
 * @param u       the user (its other fields are not looked at).
 * @param hex     out: 64 lowercase hex digits and a NUL.
 * @param msg     buffer for the reason on failure (names the user and the source, never
 *                the password); may be NULL.
 * @param msglen  its size.
 * @return 0; TL_E_CONFIG if there is no source or more than one, or password_sha256 is
 *         not 64 hex digits; -ENOENT if password_env is not set or password_file does not
 *         exist; -EINVAL if the password is empty or holds a NUL byte; -E2BIG if it is
 *         longer than TL_GRANTS_PASSWORD_MAX; another -errno if the file cannot be read;
 *         -ENOMEM.
 */
int tl_grants_password_hash(
        const struct tl_route_user_def *u, char hex[TL_ROUTE_SHA256_HEX], char *msg, size_t msglen);

/**
 * Write the users of @p conf (every one of conf->users, in order) in form @p fmt.
 *
 * Call after tl_route_build() accepted @p conf (it checks that each user's databases are
 * routed). Every password is resolved before anything is written: on failure nothing
 * was written.
 *
 * @param out     where to write.
 * @param fmt     TL_GRANTS_XML or TL_GRANTS_SQL.
 * @param conf    the `routing:` section.
 * @param err     buffer for the reason on failure (`routing user '<name>': ...`); may be
 *                NULL.
 * @param errlen  its size.
 * @return 0; TL_E_CONFIG if a name, database, network or access value is invalid; the
 *         errors of tl_grants_password_hash(); -EINVAL if @p out or @p conf is NULL or
 *         @p fmt is out of range; -EIO if writing failed.
 */
int tl_grants_users(FILE *out, enum tl_grants_format fmt, const struct tl_route_conf *conf,
        char *err, size_t errlen);

/**
 * Write the DDL of every routed database: for each distinct database in route order
 * (the default route's first), CREATE DATABASE IF NOT EXISTS, then the CREATE TABLE of
 * each main table routed to it (sink_output or the rule's `table`), error_events and
 * dead_letter, each statement followed by ';' (clickhouse-client --multiquery reads it;
 * statements are separated by an empty line). Built with uplink/tl_ddl.h: the columns,
 * engine and keys are those of tl_ddl_create_table(); a renamed main table differs only
 * in its name. For a table with one route this is exactly what `tapline schema ddl`
 * printed before routing existed.
 *
 * @return 0; the errors of tl_ddl_create_database() / tl_ddl_create_table() (-EINVAL for
 *         an invalid database or table name, TL_E_SCHEMA); -EINVAL if an argument is NULL;
 *         -ENOMEM; -EIO if writing failed.
 */
int tl_grants_ddl(FILE *out, const struct tl_schema *schema, const struct tl_route_table *t);

#endif
