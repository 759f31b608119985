package dumpgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
)

// pgDumpVersion is the release the header names, Debian bookworm's.
const pgDumpVersion = "15.18 (Debian 15.18-0+deb12u1)"

// pgSessionSettings open the dump and follow every \connect, as pg_dump writes them.
const pgSessionSettings = `SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

`

// writePostgreSQL writes what `pg_dump --create` writes in plain format for a database holding
// the shop's data in a schema of the database's name: the database created and connected to,
// tables, a sequence, a view, trigger and plain functions, the data in COPY blocks, then
// constraints, indexes and the trigger, each object under pg_dump's comment header.
func (s Spec) writePostgreSQL(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	db, schema := pgIdent(s.Database), pgIdent(s.Database)
	owner := "-"
	if s.Owner != "" {
		owner = s.Owner
	}
	// object writes pg_dump's header of one object, its definition and, for the dump's roles,
	// its OWNER TO statement.
	object := func(name, kind, objSchema, definition, alter string) {
		p("--\n-- Name: %s; Type: %s; Schema: %s; Owner: %s\n--\n\n%s\n\n\n", name, kind, objSchema, owner, definition)
		if s.Owner != "" && alter != "" {
			p("ALTER %s OWNER TO %s;\n\n", alter, pgIdent(s.Owner))
		}
	}
	table := func(name string) string { return schema + "." + pgIdent(name) }

	// The header and trailer pg_dump writes: an import checks that a dump naming its tool ends
	// with the trailer, so a truncated file is never taken for a complete one.
	// pg_dump 15.14 and later fence the dump between \restrict and \unrestrict with a random key,
	// so that a server's malicious output cannot run psql meta-commands during the restore.
	restrict := restrictKey(s.Seed)
	p("--\n-- PostgreSQL database dump\n--\n\n\\restrict %s\n\n", restrict)
	p("-- Dumped from database version %s\n-- Dumped by pg_dump version %s\n", pgDumpVersion, pgDumpVersion)
	p("-- myaas test dump, seed %d, %d rows\n\n", s.Seed, s.Rows)
	p("%s", pgSessionSettings)
	object(s.Database, "DATABASE", "-",
		fmt.Sprintf("CREATE DATABASE %s WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';", db),
		"DATABASE "+db)
	p("\\unrestrict %s\n\\connect %s\n\\restrict %s\n\n%s", restrict, db, restrict, pgSessionSettings)
	object(s.Database, "SCHEMA", "-", fmt.Sprintf("CREATE SCHEMA %s;", schema), "SCHEMA "+schema)

	object("order_count()", "FUNCTION", s.Database, fmt.Sprintf(
		"CREATE FUNCTION %s.order_count() RETURNS bigint\n    LANGUAGE sql\n    AS $$SELECT count(*) FROM %s$$;",
		schema, table("orders")), "FUNCTION "+schema+".order_count()")
	object("orders_audit()", "FUNCTION", s.Database, fmt.Sprintf(
		"CREATE FUNCTION %s.orders_audit() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$\nBEGIN\n  INSERT INTO %s VALUES (NEW.id, 'inserted');\n  RETURN NEW;\nEND;\n$$;",
		schema, table("audit")), "FUNCTION "+schema+".orders_audit()")

	p("SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n")
	object("audit", "TABLE", s.Database, fmt.Sprintf(
		"CREATE TABLE %s (\n    order_id integer NOT NULL,\n    at character varying(20) NOT NULL\n);", table("audit")),
		"TABLE "+table("audit"))
	object("customers", "TABLE", s.Database, fmt.Sprintf(
		"CREATE TABLE %s (\n    id integer NOT NULL,\n    name character varying(100) NOT NULL,\n    email character varying(200) NOT NULL\n);", table("customers")),
		"TABLE "+table("customers"))
	object("orders", "TABLE", s.Database, fmt.Sprintf(
		"CREATE TABLE %s (\n    id integer NOT NULL,\n    customer_id integer NOT NULL,\n    total_cents bigint NOT NULL,\n    note text\n);", table("orders")),
		"TABLE "+table("orders"))
	object("customer_totals", "VIEW", s.Database, fmt.Sprintf(
		"CREATE VIEW %s AS\n SELECT orders.customer_id,\n    sum(orders.total_cents) AS total\n   FROM %s\n  GROUP BY orders.customer_id;",
		table("customer_totals"), table("orders")), "TABLE "+table("customer_totals"))
	object("orders_id_seq", "SEQUENCE", s.Database, fmt.Sprintf(
		"CREATE SEQUENCE %s\n    AS integer\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1;", table("orders_id_seq")),
		"TABLE "+table("orders_id_seq"))
	object("orders_id_seq", "SEQUENCE OWNED BY", s.Database, fmt.Sprintf(
		"ALTER SEQUENCE %s OWNED BY %s.id;", table("orders_id_seq"), table("orders")), "")
	object("orders id", "DEFAULT", s.Database, fmt.Sprintf(
		"ALTER TABLE ONLY %s ALTER COLUMN id SET DEFAULT nextval('%s.orders_id_seq'::regclass);", table("orders"), schema), "")

	// Data, in pg_dump's order: tables by name, the sequence's value after them.
	copyBlock := func(name, columns string, n int, row func(i int) string) {
		p("--\n-- Data for Name: %s; Type: TABLE DATA; Schema: %s; Owner: %s\n--\n\n", name, s.Database, owner)
		p("COPY %s (%s) FROM stdin;\n", table(name), columns)
		for i := 1; i <= n; i++ {
			_, _ = bw.WriteString(row(i)) // bufio keeps the first error for Flush
		}
		p("\\.\n\n\n")
	}
	copyBlock("audit", "order_id, at", 0, nil)
	copyBlock("customers", "id, name, email", s.customers(), func(i int) string {
		return strconv.Itoa(i) + "\t" + copyText(customerName(i)) + "\t" + copyText(customerEmail(i)) + "\n"
	})
	r := rand.New(rand.NewPCG(s.Seed, 2))
	copyBlock("orders", "id, customer_id, total_cents, note", s.Rows, func(i int) string {
		total, customer := s.order(r)
		return fmt.Sprintf("%d\t%d\t%d\t%s\n", i, customer, total, copyText(orderNote(i)))
	})
	p("--\n-- Name: orders_id_seq; Type: SEQUENCE SET; Schema: %s; Owner: %s\n--\n\n", s.Database, owner)
	p("SELECT pg_catalog.setval('%s.orders_id_seq', %d, true);\n\n\n", schema, max(1, s.Rows))

	object("customers customers_pkey", "CONSTRAINT", s.Database, fmt.Sprintf(
		"ALTER TABLE ONLY %s\n    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);", table("customers")), "")
	object("orders orders_pkey", "CONSTRAINT", s.Database, fmt.Sprintf(
		"ALTER TABLE ONLY %s\n    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);", table("orders")), "")
	object("customers_email_idx", "INDEX", s.Database, fmt.Sprintf(
		"CREATE INDEX customers_email_idx ON %s USING btree (email);", table("customers")), "")
	object("orders_customer_id_idx", "INDEX", s.Database, fmt.Sprintf(
		"CREATE INDEX orders_customer_id_idx ON %s USING btree (customer_id);", table("orders")), "")
	object("orders orders_audit", "TRIGGER", s.Database, fmt.Sprintf(
		"CREATE TRIGGER orders_audit AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s.orders_audit();", table("orders"), schema), "")

	p("--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict %s\n\n", restrict)
	return bw.Flush()
}

// restrictKey is the key of pg_dump's \restrict: 64 letters and digits, here drawn from the seed.
func restrictKey(seed uint64) string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	r := rand.New(rand.NewPCG(seed, 3))
	key := make([]byte, 64)
	for i := range key {
		key[i] = chars[r.IntN(len(chars))]
	}
	return string(key)
}

// pgIdent quotes an identifier when PostgreSQL would not read it back as written, as pg_dump does.
func pgIdent(name string) string {
	plain := name != ""
	for i, c := range name {
		lower := c >= 'a' && c <= 'z' || c == '_'
		later := i > 0 && (c >= '0' && c <= '9' || c == '$')
		plain = plain && (lower || later)
	}
	if plain {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// copyText escapes a value for COPY's text format.
var copyText = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace

// BrokenPostgreSQL is BrokenSQL for psql: the statement on line 5 fails.
const BrokenPostgreSQL = "CREATE SCHEMA broken;\nSET search_path = broken;\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nINSERT INTO no_such_table VALUES (2);\n"
