package dumpgen

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/myaas/myaas/internal/mariadbtest"
)

func TestWriteIsDeterministicAndMatchesExpect(t *testing.T) {
	s := Spec{Database: "shop", Rows: 1234, Seed: 7, RowsPerInsert: 100}
	if n := strings.Count(writeTwice(t, s), "INSERT INTO `orders`"); n != 13 {
		t.Fatalf("%d order INSERTs, want 13 of at most 100 rows", n)
	}
	e := s.Expect()
	if e.Orders != 1234 || e.Customers != 123 || e.OrderTotalCents <= 0 {
		t.Fatalf("expect %+v", e)
	}
	other := Spec{Database: "shop", Rows: 1234, Seed: 8}.Expect()
	if other.OrderTotalCents == e.OrderTotalCents {
		t.Fatal("the seed does not change the data")
	}
}

// writeTwice writes the dump twice and returns it, failing unless both are the same bytes.
func writeTwice(t *testing.T, s Spec) string {
	t.Helper()
	var a, b bytes.Buffer
	if err := s.Write(&a); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same spec, different bytes")
	}
	return a.String()
}

// TestDumpLoadsIntoRealServer loads the dump with the server's own client and checks Expect.
func TestDumpLoadsIntoRealServer(t *testing.T) {
	srv := mariadbtest.Start(t)
	s := Spec{Database: "shop", Rows: 2500, Seed: 3, RowsPerInsert: 200}
	var dump bytes.Buffer
	if err := s.Write(&dump); err != nil {
		t.Fatal(err)
	}
	client, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(client, "--no-defaults", "--socket="+srv.Socket, "-uroot")
	cmd.Stdin = &dump
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	db := srv.Root(t)
	defer db.Close()
	var customers, orders int
	var total int64
	var name string
	row := db.QueryRow("SELECT (SELECT COUNT(*) FROM shop.customers), (SELECT COUNT(*) FROM shop.orders), (SELECT SUM(total_cents) FROM shop.orders), (SELECT name FROM shop.customers WHERE id = 5)")
	if err := row.Scan(&customers, &orders, &total, &name); err != nil {
		t.Fatal(err)
	}
	want := s.Expect()
	if customers != want.Customers || orders != want.Orders || total != want.OrderTotalCents || name != "李雷 5" {
		t.Fatalf("loaded %d customers, %d orders, total %d, name %q; want %+v", customers, orders, total, name, want)
	}
	var n int
	if _, err := db.Exec("INSERT INTO shop.orders VALUES (999999, 1, 1, NULL)"); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM shop.audit").Scan(&n); err != nil || n != 1 {
		t.Fatalf("trigger did not run: %d %v", n, err)
	}
}
