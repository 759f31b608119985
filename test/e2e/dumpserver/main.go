// Command dumpserver is end-to-end test infrastructure: it serves (or writes into a volume) the
// deterministic dumps of package dumpgen, plus broken ones, so the cluster tests need no external
// storage. Its image is built locally like the manager's.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/myaas/myaas/test/e2e/dumpgen"
)

// pgOwner is the role of the source server that owns the PostgreSQL dumps' objects.
const pgOwner = "shop_owner"

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: dumpserver serve|write [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	rows := fs.Int("rows", 100000, "rows of the shop dump")
	seed := fs.Uint64("seed", 1, "seed of the shop dump")
	addr := fs.String("addr", ":8080", "serve: listen address")
	rate := fs.Int("rate", 0, "serve: bytes per second per response, 0 for unlimited")
	dir := fs.String("dir", "/dumps", "write: directory to write into")
	_ = fs.Parse(os.Args[2:])

	files, err := dumps(dumpgen.Spec{Database: "shop", Rows: *rows, Seed: *seed})
	if err != nil {
		log.Fatal(err)
	}
	switch os.Args[1] {
	case "serve":
		log.Fatal(serve(*addr, *rate, files))
	case "write":
		for name, content := range files {
			path := filepath.Join(*dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				log.Fatal(err)
			}
			if err := os.WriteFile(path, content, 0o644); err != nil {
				log.Fatal(err)
			}
			fmt.Printf("wrote %s (%d bytes)\n", path, len(content))
		}
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

// dumps are the files served by name: the MariaDB ones at the top, the PostgreSQL ones, of the
// same data, under postgresql/. shop/ holds the dump split in two files that must load in name
// order (schema and data); broken/ holds the failure cases; accounts/ a MariaDB dump with the
// source server's accounts.
func dumps(spec dumpgen.Spec) (map[string][]byte, error) {
	spec.Dialect = dumpgen.MariaDB
	files, sql, err := engineDumps(spec, "USE `shop`;\nCREATE TABLE `settings` (`k` varchar(20) PRIMARY KEY, `v` text);\nINSERT INTO `settings` VALUES ('loaded','yes');\n", dumpgen.BrokenSQL)
	if err != nil {
		return nil, err
	}
	// A dump of a production server with its accounts, as mariadb-dump --system=users writes them
	// before its trailer.
	trailer := bytes.LastIndex(sql, []byte("\n-- Dump completed"))
	files["accounts/shop.sql.gz"] = gzipped(slices.Concat(sql[:trailer], []byte("\n"+dumpgen.AccountsSQL), sql[trailer:]))

	// A second file of a plain PostgreSQL dump runs in a psql session of its own: it connects to
	// the dump's database itself.
	spec.Dialect, spec.Owner = dumpgen.PostgreSQL, pgOwner
	pg, _, err := engineDumps(spec, "\\connect shop\nCREATE TABLE shop.settings (k varchar(20) PRIMARY KEY, v text);\nINSERT INTO shop.settings VALUES ('loaded', 'yes');\n", dumpgen.BrokenPostgreSQL)
	if err != nil {
		return nil, err
	}
	for name, content := range pg {
		files["postgresql/"+name] = content
	}
	return files, nil
}

// engineDumps are one dialect's files, and its full dump uncompressed.
func engineDumps(spec dumpgen.Spec, extra, broken string) (map[string][]byte, []byte, error) {
	var full bytes.Buffer
	if err := spec.Write(&full); err != nil {
		return nil, nil, err
	}
	gz := gzipped(full.Bytes())
	sql := full.Bytes()
	// Cut after the last complete statement before the middle: every statement in it is whole.
	boundary := bytes.LastIndex(sql[:len(sql)/2], []byte(";\n")) + 2
	return map[string][]byte{
		"shop.sql.gz":              gz,
		"shop/01-shop.sql.gz":      gz,
		"shop/02-extra.sql":        []byte(extra),
		"broken/truncated.sql.gz":  gz[:len(gz)/2],
		"broken/boundary.sql.gz":   gzipped(sql[:boundary]),
		"broken/empty.sql":         {},
		"broken/empty.sql.gz":      {},
		"broken/bad-statement.sql": []byte(broken),
	}, sql, nil
}

// current is the file /current.sql.gz serves, switched with POST /current?file=NAME: a nightly
// dump location whose content changes from one refresh to the next.
type current struct {
	mu   sync.Mutex
	name string
}

func (c *current) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.name
}

func (c *current) set(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.name = name
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return out.Bytes()
}

func serve(addr string, rate int, files map[string][]byte) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	// Dumps too big to hold in memory are generated while they are sent:
	// /generated.sql?rows=N&seed=S[&dialect=mariadb|postgresql].
	mux.HandleFunc("/generated.sql", func(w http.ResponseWriter, r *http.Request) {
		rows, err := strconv.Atoi(r.URL.Query().Get("rows"))
		if err != nil || rows <= 0 {
			http.Error(w, "rows must be a positive integer", http.StatusBadRequest)
			return
		}
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		spec := dumpgen.Spec{Database: "shop", Rows: rows, Seed: seed}
		switch d := r.URL.Query().Get("dialect"); d {
		case "", "mariadb":
		case "postgresql":
			spec.Dialect, spec.Owner = dumpgen.PostgreSQL, pgOwner
		default:
			http.Error(w, fmt.Sprintf("dialect %q: valid dialects are mariadb, postgresql", d), http.StatusBadRequest)
			return
		}
		if err := spec.Write(w); err != nil {
			log.Printf("generated.sql: %v", err)
		}
	})
	cur := &current{name: "shop.sql.gz"}
	mux.HandleFunc("POST /current", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("file")
		if _, ok := files[name]; !ok {
			http.Error(w, "no such file: "+name, http.StatusNotFound)
			return
		}
		cur.set(name)
		_, _ = io.WriteString(w, "current.sql.gz is now "+name+"\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path[1:]
		if name == "current.sql.gz" {
			name = cur.get()
		}
		content, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		if rate <= 0 {
			_, _ = w.Write(content)
			return
		}
		for off := 0; off < len(content); off += rate / 10 {
			end := min(off+rate/10, len(content))
			if _, err := w.Write(content[off:end]); err != nil {
				return
			}
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	log.Printf("serving %d dumps on %s", len(files), addr)
	return http.ListenAndServe(addr, mux)
}
