// Package dumpgen writes deterministic SQL dumps for end-to-end tests and benchmarks, laid out as
// mariadb-dump or pg_dump write them: the same spec always gives the same bytes, and both dialects
// hold the same data, so a test knows what the loaded data must be without keeping a dump in the
// repository.
package dumpgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
)

// Dialect is the dump tool whose output Write imitates.
type Dialect int

const (
	// MariaDB is mariadb-dump's plain SQL: extended INSERTs, DELIMITER blocks.
	MariaDB Dialect = iota
	// PostgreSQL is `pg_dump --create` in plain format: COPY blocks, the database created and
	// connected to by the dump itself, its tables in schema Database.
	PostgreSQL
)

// Spec describes a dump.
type Spec struct {
	// Dialect of the dump; the data is the same in each.
	Dialect Dialect
	// Database the dump creates and loads.
	Database string
	// Rows in the orders table; customers get a tenth of that.
	Rows int
	// Seed of the pseudo-random data.
	Seed uint64
	// RowsPerInsert is the size of each extended INSERT (MariaDB).
	RowsPerInsert int
	// Owner is the role a PostgreSQL dump's OWNER TO statements name, as pg_dump writes them for
	// the source server's roles; empty writes none, as pg_dump --no-owner does.
	Owner string
}

// Expected is what a correct load of the dump contains.
type Expected struct {
	Customers int
	Orders    int
	// OrderTotalCents is SUM(total_cents) over orders: a cheap whole-table check.
	OrderTotalCents int64
}

// Expect computes what Write produces without writing it.
func (s Spec) Expect() Expected {
	e := Expected{Customers: s.customers(), Orders: s.Rows}
	r := rand.New(rand.NewPCG(s.Seed, 2))
	for i := 1; i <= s.Rows; i++ {
		total, _ := s.order(r)
		e.OrderTotalCents += total
	}
	return e
}

func (s Spec) customers() int { return max(1, s.Rows/10) }

func orderTotal(r *rand.Rand) int64 { return int64(r.IntN(100000)) + 1 }

// The rows' text, the same in every dialect: accents, CJK and quotes in both quote styles.
var customerNames = []string{"Zoë", "José", "Søren", "Łukasz", "Ana", "李雷", "Ærin", "Renée"}

func customerName(i int) string  { return fmt.Sprintf("%s %d", customerNames[i%len(customerNames)], i) }
func customerEmail(i int) string { return fmt.Sprintf("user%d@example.com", i) }
func orderNote(i int) string     { return fmt.Sprintf(`order %d: it's "quoted" – ✓`, i) }

// order draws order i's total and customer, in the order both dialects and Expect rely on.
func (s Spec) order(r *rand.Rand) (total int64, customer int) {
	total = orderTotal(r)
	return total, r.IntN(s.customers()) + 1
}

// Write writes the dump in the spec's dialect.
func (s Spec) Write(w io.Writer) error {
	if s.Dialect == PostgreSQL {
		return s.writePostgreSQL(w)
	}
	return s.writeMariaDB(w)
}

// writeMariaDB writes schema, a view, a trigger and a procedure in DELIMITER blocks, utf8mb4
// text, and the data as extended INSERTs, as mariadb-dump lays it out.
func (s Spec) writeMariaDB(w io.Writer) error {
	if s.RowsPerInsert <= 0 {
		s.RowsPerInsert = 500
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	db := s.Database
	// The header and trailer mariadb-dump writes: an import checks that a dump naming its tool ends
	// with the trailer, so a truncated file is never taken for a complete one.
	p("-- MariaDB dump 10.19  Distrib 10.11.14-MariaDB, for debian-linux-gnu (x86_64)\n--\n")
	p("-- myaas test dump, seed %d, %d rows\n", s.Seed, s.Rows)
	p("/*!40101 SET NAMES utf8mb4 */;\n/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n")
	// mariadb-dump's section comments: the agent splits a dump at them to load tables in parallel.
	section := func(title string) { p("\n--\n-- %s\n--\n\n", title) }
	section("Current Database: `" + db + "`")
	p("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `%s` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\nUSE `%s`;\n\n", db, db)
	section("Table structure for table `customers`")
	p("DROP TABLE IF EXISTS `customers`;\nCREATE TABLE `customers` (\n  `id` int NOT NULL,\n  `name` varchar(100) NOT NULL,\n  `email` varchar(200) NOT NULL,\n  PRIMARY KEY (`id`),\n  KEY `email` (`email`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n\n")
	section("Table structure for table `orders`")
	p("DROP TABLE IF EXISTS `orders`;\nCREATE TABLE `orders` (\n  `id` int NOT NULL,\n  `customer_id` int NOT NULL,\n  `total_cents` bigint NOT NULL,\n  `note` text,\n  PRIMARY KEY (`id`),\n  KEY `customer` (`customer_id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n\n")
	section("Table structure for table `audit`")
	p("DROP TABLE IF EXISTS `audit`;\nCREATE TABLE `audit` (`order_id` int NOT NULL, `at` varchar(20) NOT NULL) ENGINE=InnoDB;\n\n")

	section("Dumping data for table `customers`")
	writeRows(bw, "customers", s.customers(), s.RowsPerInsert, func(i int) string {
		return fmt.Sprintf("(%d,%s,%s)", i, mariadbString(customerName(i)), mariadbString(customerEmail(i)))
	})
	r := rand.New(rand.NewPCG(s.Seed, 2))
	section("Dumping data for table `orders`")
	writeRows(bw, "orders", s.Rows, s.RowsPerInsert, func(i int) string {
		total, customer := s.order(r)
		return fmt.Sprintf("(%d,%d,%d,%s)", i, customer, total, mariadbString(orderNote(i)))
	})

	p("\nCREATE OR REPLACE VIEW `customer_totals` AS SELECT `customer_id`, SUM(`total_cents`) AS `total` FROM `orders` GROUP BY `customer_id`;\n\n")
	p("DELIMITER ;;\n")
	p("CREATE TRIGGER `orders_audit` AFTER INSERT ON `orders` FOR EACH ROW BEGIN\n  INSERT INTO `audit` VALUES (NEW.id, 'inserted');\nEND ;;\n")
	p("CREATE PROCEDURE `order_count`(OUT n INT)\nBEGIN\n  SELECT COUNT(*) INTO n FROM `orders`;\nEND ;;\n")
	p("DELIMITER ;\n")
	p("/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n\n-- Dump completed on 2026-11-26  3:00:00\n")
	return bw.Flush()
}

// mariadbString is a string literal as mariadb-dump writes it: quotes doubled or escaped.
func mariadbString(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`, `"`, `\"`).Replace(v) + "'"
}

func writeRows(w *bufio.Writer, table string, n, perInsert int, row func(i int) string) {
	var b strings.Builder
	for start := 1; start <= n; start += perInsert {
		b.Reset()
		fmt.Fprintf(&b, "INSERT INTO `%s` VALUES ", table)
		for i := start; i < start+perInsert && i <= n; i++ {
			if i > start {
				b.WriteByte(',')
			}
			b.WriteString(row(i))
		}
		b.WriteString(";\n")
		_, _ = w.WriteString(b.String()) // bufio keeps the first error for Flush
	}
}

// BrokenSQL is a dump whose third statement fails: the import must report that line.
const BrokenSQL = "CREATE DATABASE IF NOT EXISTS `broken`;\nUSE `broken`;\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nINSERT INTO no_such_table VALUES (2);\n"

// AccountsSQL creates the accounts a dump of a production server brings along, with the
// passwords a test tries on the clones: prod_admin / prod-secret and reporting / report-secret.
const AccountsSQL = "CREATE USER `prod_admin`@`%` IDENTIFIED BY 'prod-secret';\n" +
	"GRANT ALL PRIVILEGES ON *.* TO `prod_admin`@`%` WITH GRANT OPTION;\n" +
	"CREATE USER `reporting`@`%` IDENTIFIED BY 'report-secret';\n" +
	"GRANT SELECT ON `shop`.* TO `reporting`@`%`;\n"
