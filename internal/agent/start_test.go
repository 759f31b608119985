package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// startClone prepares a copy of datadir as a clone and runs the server `agent start` would exec.
// creds are the user's Secret's keys and root-password, which goes to the admin Secret.
func startClone(t *testing.T, datadir string, creds map[string]string, extraPrivileges ...string) (addr string, stop func()) {
	t.Helper()
	credDir, adminDir := credentialDirs(t, creds)
	port := freePort(t)
	runDir := filepath.Join(t.TempDir(), "run")
	bin, argv, err := startCommand(startOptions{engine: "mariadb", datadir: datadir, runDir: runDir, credentialsDir: credDir, adminDir: adminDir, serverID: 42, port: port,
		serverOptions: multiFlag{"max_connections=77"}, extraPrivileges: extraPrivileges})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for probe(context.Background(), engine.MariaDB{}, addr, creds["username"], creds["password"], creds["database"], time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the clone never accepted its credentials")
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	return addr, stop
}

// credentialDirs writes the user's Secret and the admin Secret as the kubelet mounts them: creds
// holds the user's keys and root-password; the admin account's password is admin-<root-password>.
func credentialDirs(t *testing.T, creds map[string]string) (user, admin string) {
	t.Helper()
	user, admin = t.TempDir(), t.TempDir()
	writeSecrets(t, user, admin, creds)
	return user, admin
}

func writeSecrets(t *testing.T, user, admin string, creds map[string]string) {
	t.Helper()
	userKeys := map[string]string{}
	for k, v := range creds {
		if k != agentapi.AdminKeyRootPassword {
			userKeys[k] = v
		}
	}
	writeSecretFiles(t, user, userKeys)
	writeSecretFiles(t, admin, map[string]string{
		agentapi.AdminKeyUsername:     agentapi.AdminUsername,
		agentapi.AdminKeyPassword:     "admin-" + creds[agentapi.AdminKeyRootPassword],
		agentapi.AdminKeyRootPassword: creds[agentapi.AdminKeyRootPassword],
	})
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func login(addr, user, password, database string) error {
	return probe(context.Background(), engine.MariaDB{}, addr, user, password, database, 3*time.Second)
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "clone")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

func TestCloneGetsItsOwnCredentialsAndIdentity(t *testing.T) {
	dump, _ := sourceDumpSmall()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "d.sql"), dump, 0o644)
	keep := filepath.Join(t.TempDir(), ".myaas", "myaas")
	template, report, err := runImportInto(t, importOptions{source: sourceConfig{dir: dir, glob: "d.sql"}, keepAgent: keep})
	if err != nil {
		t.Fatal(err)
	}
	// The clones run the agent the import left in the template volume.
	self, _ := os.Executable()
	kept, err := os.Stat(keep)
	if want, serr := os.Stat(self); err != nil || serr != nil || kept.Size() != want.Size() || kept.Mode()&0o111 == 0 {
		t.Fatalf("agent kept in the volume: %v %v", kept, err)
	}
	if sum, err := FileSHA256(self); err != nil || report.AgentSHA256 != sum {
		t.Fatalf("reported agent %q, the binary is %q (%v): the controller could not trust the copy", report.AgentSHA256, sum, err)
	}
	// The template as imported: root without a password, as every clone starts out.
	tmplSrv := serveDatadir(t, copyDir(t, template))
	if err := tmplSrv.Root(t).Ping(); err != nil {
		t.Fatalf("template root login: %v", err)
	}

	aliceCreds := map[string]string{"username": "alice", "password": "pw-alice-1", "database": "app", "root-password": "root-alice"}
	bobCreds := map[string]string{"username": "bob", "password": "pw-bob-1", "database": "bobdb", "root-password": "root-bob"}
	aliceDir := copyDir(t, template)
	alice, stopAlice := startClone(t, aliceDir, aliceCreds)
	bob, _ := startClone(t, copyDir(t, template), bobCreds)

	if err := login(alice, "root", "", ""); err == nil {
		t.Fatal("the template's passwordless root still works on a clone")
	}
	if err := login(alice, "root", "root-alice", ""); err == nil {
		t.Fatal("root logs in over TCP")
	}
	if err := login(alice, agentapi.AdminUsername, "admin-root-alice", ""); err != nil {
		t.Fatalf("the operator's admin account with the admin Secret's password: %v", err)
	}
	if err := login(bob, "bob", "pw-alice-1", "bobdb"); err == nil {
		t.Fatal("bob's clone accepts alice's password")
	}
	if err := login(alice, "bob", "pw-bob-1", ""); err == nil {
		t.Fatal("alice's clone knows bob")
	}
	db := open(t, alice, "alice", "pw-alice-1", "app")
	var rows, maxConn, serverID int
	if err := db.QueryRow("SELECT COUNT(*), @@max_connections, @@server_id FROM app.t").Scan(&rows, &maxConn, &serverID); err != nil {
		t.Fatal(err)
	}
	if rows != 2000 || maxConn != 77 || serverID != 42 {
		t.Fatalf("rows %d max_connections %d server_id %d", rows, maxConn, serverID)
	}
	if _, err := db.Exec("CREATE TABLE app.mine (id INT)"); err != nil {
		t.Fatalf("the app user cannot write: %v", err)
	}
	if err := login(bob, "bob", "pw-bob-1", "bobdb"); err != nil {
		t.Fatalf("bob's own database was not created: %v", err)
	}
	// A clone that rewrote its redo log would own a private copy of it: no longer copy-on-write.
	var logSize int64
	if err := db.QueryRow("SELECT @@innodb_log_file_size").Scan(&logSize); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(template, "ib_logfile0")); err != nil || st.Size() != logSize {
		t.Fatalf("clone runs with a %d-byte redo log, the template has %v (%v)", logSize, st.Size(), err)
	}
	if _, err := os.Stat(filepath.Join(aliceDir, "ibtmp1")); err == nil {
		t.Fatal("the temporary tablespace, rewritten at every start, was put in the cloned volume")
	}

	// A restart with a rotated password: idempotent, and only the new password works.
	stopAlice()
	aliceCreds["password"] = "pw-alice-2"
	alice, _ = startClone(t, aliceDir, aliceCreds)
	if err := login(alice, "alice", "pw-alice-1", "app"); err == nil {
		t.Fatal("the old password survived a restart with a new one")
	}
	var n int
	if err := open(t, alice, "alice", "pw-alice-2", "app").QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'mine'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("data written before the restart: %d %v", n, err)
	}
}

func TestStartRefusesAnEmptyVolumeAndMissingCredentials(t *testing.T) {
	cred, admin := credentialDirs(t, map[string]string{"username": "a", "password": "b", "database": "c", "root-password": "d"})
	_, _, err := startCommand(startOptions{engine: "mariadb", datadir: t.TempDir(), runDir: t.TempDir(), credentialsDir: cred, adminDir: admin})
	if err == nil || !strings.Contains(err.Error(), "holds no database") {
		t.Fatalf("empty datadir: %v", err)
	}
	os.Remove(filepath.Join(admin, "root-password"))
	_, _, err = startCommand(startOptions{engine: "mariadb", datadir: t.TempDir(), runDir: t.TempDir(), credentialsDir: cred, adminDir: admin})
	if err == nil || !strings.Contains(err.Error(), "root-password") {
		t.Fatalf("missing root password: %v", err)
	}
	os.Remove(filepath.Join(cred, "password"))
	_, _, err = startCommand(startOptions{engine: "mariadb", datadir: t.TempDir(), runDir: t.TempDir(), credentialsDir: cred, adminDir: admin})
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("missing password: %v", err)
	}
}

func TestProgressEndpointAndLog(t *testing.T) {
	now := time.Unix(0, 0)
	tr := newTracker(func() time.Time { return now })
	tr.setTotal(100 << 20)
	tr.setFile("a.sql.gz")
	tr.setStep(agentapi.StepLoading)
	tr.add(25 << 20)
	now = now.Add(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := freePort(t)
	if err := serveProgress(ctx, fmt.Sprintf("127.0.0.1:%d", port), tr); err != nil {
		t.Fatal(err)
	}
	var p agentapi.Progress
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/progress", port))
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.Step != agentapi.StepLoading || p.Percent != 25 || p.BytesPerSecond != 5<<20 || p.ETASeconds != 15 || p.CurrentFile != "a.sql.gz" {
		t.Fatalf("progress %+v", p)
	}
	if s := progressLine(p); !strings.Contains(s, "25.0 MiB of 100.0 MiB (25.0%)") || !strings.Contains(s, "ETA 15s") {
		t.Fatalf("log line %q", s)
	}
}

func TestLineIndexLocatesStatements(t *testing.T) {
	x := newLineIndex(4)
	input := "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n" + "INSERT INTO t VALUES " + strings.Repeat("(2),", 100) + "(3);\nSELECT 1;\n"
	// Written in odd-sized pieces, as a pipe delivers it.
	for i := 0; i < len(input); i += 7 {
		x.Write([]byte(input[i:min(i+7, len(input))]))
	}
	off, stmt := x.at(2)
	if off != 25 || stmt != "INSERT INTO t VALUES (…)" {
		t.Fatalf("line 2 at %d: %q", off, stmt)
	}
	if _, stmt := x.at(3); stmt != "INSERT INTO t VALUES (…)" {
		t.Fatalf("line 3: %q", stmt)
	}
	if off, _ := x.at(99); off != -1 {
		t.Fatal("an unknown line must not be invented")
	}
}

func TestInstallCopiesTheBinary(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "bin", "myaas")
	if err := Install(dst); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	a, _ := os.ReadFile(self)
	b, _ := os.ReadFile(dst)
	st, _ := os.Stat(dst)
	if len(a) == 0 || string(a) != string(b) || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed copy differs (%d vs %d bytes, mode %v)", len(a), len(b), st.Mode())
	}
}

func open(t *testing.T, addr, user, password, database string) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", addr, database
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}
