package agent

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// startOptions are the flags of `agent start`.
type startOptions struct {
	engine         string
	datadir        string
	runDir         string
	credentialsDir string
	adminDir       string
	serverID       uint
	serverOptions  multiFlag
	// extraPrivileges are granted to the application user on *.* (spec.extraPrivileges).
	extraPrivileges multiFlag
	port            int
	// readinessPort serves the kubelet's readiness probe; 0 serves none.
	readinessPort int
	// tlsDir holds the certificate Secret; empty serves without TLS (an instance of an older
	// operator, whose pod mounts none).
	tlsDir                 string
	requireSecureTransport bool
}

func parseStartFlags(args []string) (startOptions, error) {
	var o startOptions
	fs := newFlagSet("start")
	fs.StringVar(&o.engine, agentapi.FlagEngine, "mariadb", "database engine: mariadb or mysql")
	fs.StringVar(&o.datadir, agentapi.FlagDatadir, agentapi.DataDir, "the cloned datadir")
	fs.StringVar(&o.runDir, agentapi.FlagRunDir, agentapi.RunDir, "directory for the socket, pid and init file")
	fs.StringVar(&o.credentialsDir, agentapi.FlagCredentialsDir, agentapi.CredentialsDir, "the instance's mounted Secret")
	fs.StringVar(&o.adminDir, agentapi.FlagAdminCredentialsDir, agentapi.AdminCredentialsDir, "the instance's mounted admin Secret")
	fs.Var(&o.extraPrivileges, agentapi.FlagExtraPrivilege, "privilege granted to the application user on *.* (repeatable)")
	fs.UintVar(&o.serverID, agentapi.FlagServerID, 1, "server_id of this instance")
	fs.Var(&o.serverOptions, agentapi.FlagServerOption, "server option name=value (repeatable)")
	fs.IntVar(&o.port, agentapi.FlagPort, 0, "TCP port; the engine's own by default")
	fs.IntVar(&o.readinessPort, agentapi.FlagReadinessPort, 0, "TCP port answering the readiness probe at "+agentapi.ReadinessPath+"; 0 for none")
	fs.StringVar(&o.tlsDir, agentapi.FlagTLSDir, "", "the instance's mounted certificate Secret; TLS is off without it")
	fs.BoolVar(&o.requireSecureTransport, agentapi.FlagRequireSecureTransport, false, "refuse TCP clients without TLS")
	return o, fs.Parse(args)
}

// readCredentials reads the instance's mounted Secrets: the application user's, and the admin one
// with root's and the operator's account's passwords.
func readCredentials(dir, adminDir string) (engine.Credentials, error) {
	c, err := readUserCredentials(dir)
	if err != nil {
		return c, err
	}
	err = readKeys(adminDir, map[string]*string{
		agentapi.AdminKeyUsername:     &c.AdminUsername,
		agentapi.AdminKeyPassword:     &c.AdminPassword,
		agentapi.AdminKeyRootPassword: &c.RootPassword,
	})
	return c, err
}

// readUserCredentials reads the application user's Secret, all the probe needs.
func readUserCredentials(dir string) (engine.Credentials, error) {
	var c engine.Credentials
	err := readKeys(dir, map[string]*string{
		agentapi.SecretKeyUsername: &c.Username,
		agentapi.SecretKeyPassword: &c.Password,
		agentapi.SecretKeyDatabase: &c.Database,
	})
	return c, err
}

func readKeys(dir string, keys map[string]*string) error {
	for key, dst := range keys {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		if *dst = strings.TrimRight(string(b), "\r\n"); *dst == "" {
			return fmt.Errorf("credentials: key %s in %s is empty", key, dir)
		}
	}
	return nil
}

// startCommand prepares the datadir and returns the server command line. Every start rewrites the
// init file from the Secret, so it is idempotent and a restarted pod keeps its credentials.
func startCommand(o startOptions) (string, []string, error) {
	eng, err := engine.LookupMySQLFamily(o.engine)
	if err != nil {
		return "", nil, err
	}
	creds, err := readCredentials(o.credentialsDir, o.adminDir)
	if err != nil {
		return "", nil, err
	}
	if st, err := os.Stat(filepath.Join(o.datadir, "mysql")); err != nil || !st.IsDir() {
		return "", nil, fmt.Errorf("%s holds no database: the clone of the template's snapshot is missing or empty", o.datadir)
	}
	grants, err := instanceGrants(o)
	if err != nil {
		return "", nil, err
	}
	keep, err := eng.PrepareClone(o.datadir)
	if err != nil {
		return "", nil, err
	}
	extra, err := serverOptions(o.serverOptions)
	if err != nil {
		return "", nil, err
	}
	filesDir := filepath.Join(o.runDir, "files")
	if err := os.MkdirAll(filesDir, 0o750); err != nil {
		return "", nil, err
	}
	initFile := filepath.Join(o.runDir, "init.sql")
	sql := strings.Join(eng.CredentialSQL(creds, grants), ";\n") + ";\n"
	if err := os.WriteFile(initFile, []byte(sql), 0o600); err != nil {
		return "", nil, fmt.Errorf("write init file: %w", err)
	}
	scratch, err := filepath.Rel(o.datadir, o.runDir)
	if err != nil {
		return "", nil, fmt.Errorf("run dir %s relative to the datadir: %w", o.runDir, err)
	}
	bin, err := engine.FindBinary(eng.ServerBinaries())
	if err != nil {
		return "", nil, err
	}
	args := append([]string{
		bin,
		"--no-defaults",
		"--datadir=" + o.datadir,
		"--socket=" + filepath.Join(o.runDir, agentapi.SocketName),
		"--pid-file=" + filepath.Join(o.runDir, "mysqld.pid"),
		"--tmpdir=" + o.runDir,
		"--bind-address=0.0.0.0",
		fmt.Sprintf("--port=%d", o.port),
		"--init-file=" + initFile,
	}, eng.ServingOptions(bufferPoolSize(), uint32(o.serverID), scratch, filesDir)...)
	args = append(args, keep...)
	tls, err := tlsOptions(eng, o)
	if err != nil {
		return "", nil, err
	}
	args = append(args, tls...)
	args = append(args, extra...)
	if runAsRoot() {
		args = append(args, "--user=root")
	}
	return bin, args, nil
}

func runStart(ctx context.Context, args []string) error {
	o, err := parseStartFlags(args)
	if err != nil {
		return err
	}
	eng, err := engine.Lookup(o.engine)
	if err != nil {
		return err
	}
	if o.port == 0 {
		o.port = int(eng.Port())
	}
	probeListener, err := listenReadiness(o.readinessPort)
	if err != nil {
		return err
	}
	probeCtx, stopProbes := context.WithCancel(context.Background())
	defer stopProbes()
	ready := &readiness{eng: eng, addr: serverSocket(eng, o), credentialsDir: o.credentialsDir, timeout: 4 * time.Second}
	go ready.serve(probeCtx, probeListener)
	if pg, ok := eng.(engine.PostgreSQL); ok {
		return runPostgresStart(ctx, pg, o)
	}
	bin, argv, err := startCommand(o)
	if err != nil {
		return err
	}
	mysqlEng := eng.(engine.MySQLFamily) // startCommand checked it
	creds, err := readCredentials(o.credentialsDir, o.adminDir)
	if err != nil {
		return err
	}
	grants, err := instanceGrants(o)
	if err != nil {
		return err
	}
	log.Printf("starting %s on %s", filepath.Base(bin), o.datadir)
	// The agent stays as the pod's first process: it hands the kubelet's SIGTERM to the server,
	// which shuts down cleanly, and meanwhile keeps the server's passwords equal to the Secret's.
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	watchCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	socket := filepath.Join(o.runDir, agentapi.SocketName)
	go followCredentials(watchCtx, secretDirs{o.credentialsDir, o.adminDir, o.tlsDir}, creds, func(ctx context.Context, applied, want engine.Credentials) error {
		err := applyCredentials(ctx, mysqlEng, socket, applied.RootPassword, want, grants)
		if err != nil && want.RootPassword != applied.RootPassword {
			// Applied already, by a previous attempt whose answer was lost.
			err = applyCredentials(ctx, mysqlEng, socket, want.RootPassword, want, grants)
		}
		return err
	}, func(ctx context.Context, applied engine.Credentials) error {
		return asRoot(ctx, socket, applied.RootPassword, mysqlEng.ReloadTLSSQL())
	}, credentialsPoll)
	if !accountsDropped(o.datadir) {
		go dropLegacyAccounts(watchCtx, o.datadir, socket, creds)
	}
	select {
	case err := <-exited:
		return serverExit(err)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		return serverExit(<-exited)
	}
}

// serverSocket is the socket the started server listens on.
func serverSocket(eng engine.Engine, o startOptions) string {
	if _, ok := eng.(engine.PostgreSQL); ok {
		return pgSocket(o) // named after the port, which a test may choose
	}
	return eng.Socket(o.runDir)
}

func serverExit(err error) error {
	if err != nil {
		return fmt.Errorf("the server exited: %w", err)
	}
	return nil
}

// credentialsPoll is how often the mounted Secrets are read: the kubelet refreshes them as soon as
// the operator tells the pod that a Secret changed, and the instance is not Ready until the server
// has taken the change (a claimed warm pool member waits on exactly this).
const credentialsPoll = 100 * time.Millisecond

// applyFunc gives the running server the credentials want; applied are those it has.
type applyFunc func(ctx context.Context, applied, want engine.Credentials) error

// reloadFunc has the running server read its certificate files again, logged in with applied.
type reloadFunc func(ctx context.Context, applied engine.Credentials) error

// followCredentials gives the running server the Secret's passwords whenever the mounted copy
// changes (edited, or the Secret deleted and made anew): the Secret is the source of truth, and
// a restart is never needed for it. MySQL's apply logs in as root with the password it applied
// last; PostgreSQL's as postgres on the socket. A certificate issued anew (renewed, or naming the
// instance that claimed a warm pool member) is loaded the same way, without a restart.
func followCredentials(ctx context.Context, dirs secretDirs, applied engine.Credentials, apply applyFunc, reload reloadFunc, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastErr := ""
	logOnce := func(what string, err error) {
		if err.Error() != lastErr {
			log.Printf("%s: %v", what, err)
			lastErr = err.Error()
		}
	}
	loadedCert := certificateOf(dirs.tls)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		want, err := readCredentials(dirs.user, dirs.admin)
		if err == nil && want != applied { // a Secret being replaced may be missing a moment
			if err = apply(ctx, applied, want); err != nil {
				logOnce("credentials from the Secret not applied yet", err)
				continue
			}
			log.Print("the server now has the Secret's credentials")
			applied, lastErr = want, ""
		}
		if cert := certificateOf(dirs.tls); cert != "" && cert != loadedCert {
			if err := reload(ctx, applied); err != nil {
				logOnce("the certificate Secret's new certificate not loaded yet", err)
				continue
			}
			log.Print("the server now serves the certificate Secret's certificate")
			loadedCert, lastErr = cert, ""
		}
	}
}

// certificateOf is the mounted certificate in dir; "" without TLS, or while the kubelet swaps it.
func certificateOf(dir string) string {
	if dir == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(dir, agentapi.TLSCertKey))
	if err != nil {
		return ""
	}
	return string(b)
}

// secretDirs are where the instance's Secrets are mounted: its credentials, the operator's admin
// credentials, and its certificate ("" when it serves no TLS).
type secretDirs struct{ user, admin, tls string }

func applyCredentials(ctx context.Context, eng engine.MySQLFamily, socket, rootPassword string, c engine.Credentials, g engine.Grants) error {
	if err := asRoot(ctx, socket, rootPassword, eng.CredentialSQL(c, g)...); err != nil {
		return fmt.Errorf("apply credentials: %w", err)
	}
	return nil
}

// asRoot runs stmts as root on the server's socket.
func asRoot(ctx context.Context, socket, rootPassword string, stmts ...string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = "root", rootPassword, "unix", socket
	cfg.Timeout = 2 * time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}
