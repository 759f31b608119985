package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// importOptions are the flags of `agent import`.
type importOptions struct {
	engine         string
	datadir        string
	runDir         string
	source         sourceConfig
	serverOptions  multiFlag
	progressAddr   string
	terminationLog string
	postImportFile string
	keepAgent      string
	// keepAccounts name the dumps' accounts that stay in the template (spec.import.keepAccounts).
	keepAccounts multiFlag
	logInterval  time.Duration
	// allowMissingTrailer loads SQL that kept a dump tool's header but not its trailer.
	allowMissingTrailer bool
	// serverLog receives the server's own log; the pod's log in production.
	serverLog io.Writer
}

func parseImportFlags(args []string) (importOptions, error) {
	var o importOptions
	fs := newFlagSet("import")
	fs.StringVar(&o.engine, agentapi.FlagEngine, "mariadb", "database engine: mariadb, mysql or postgresql")
	fs.StringVar(&o.datadir, agentapi.FlagDatadir, agentapi.DataDir, "datadir to create and load")
	fs.StringVar(&o.runDir, agentapi.FlagRunDir, agentapi.RunDir, "directory for the socket and pid file")
	fs.StringVar(&o.source.dir, agentapi.FlagSourceDir, agentapi.SourceDir, "mounted volume holding the dumps")
	fs.StringVar(&o.source.glob, agentapi.FlagSourceGlob, "", "path or glob of the dumps in --source-dir; files load in name order, so name a PostgreSQL globals file (pg_dumpall --globals-only) to sort first")
	fs.StringVar(&o.source.url, agentapi.FlagSourceURL, "", "HTTP(S) URL of a dump")
	fs.StringVar(&o.source.authDir, agentapi.FlagSourceAuthDir, "", "directory with username, password and headers for the URL")
	fs.BoolVar(&o.source.httpInsecure, agentapi.FlagSourceInsecure, false, "allow sending the credentials of --source-auth-dir over plain http://")
	fs.StringVar(&o.source.s3Endpoint, agentapi.FlagS3Endpoint, "", "S3 endpoint (host[:port])")
	fs.StringVar(&o.source.bucket, agentapi.FlagS3Bucket, "", "S3 bucket")
	fs.StringVar(&o.source.s3Key, agentapi.FlagS3Key, "", "S3 object key")
	fs.StringVar(&o.source.s3Prefix, agentapi.FlagS3Prefix, "", "S3 prefix: every object under it, in name order")
	fs.StringVar(&o.source.s3Region, agentapi.FlagS3Region, "", "S3 region")
	fs.BoolVar(&o.source.s3Insecure, agentapi.FlagS3Insecure, false, "plain HTTP to the S3 endpoint")
	fs.DurationVar(&o.source.stallTimeout, agentapi.FlagSourceStallTimeout, 2*time.Minute, "fail an HTTP or S3 source that sends nothing for this long")
	fs.StringVar(&o.source.format, agentapi.FlagSourceFormat, agentapi.SourceFormatAuto, "auto (by content), sql or mariadb-backup (a physical backup: xbstream, tar or directory)")
	fs.BoolVar(&o.allowMissingTrailer, agentapi.FlagAllowMissingTrailer, false, "load a dump whose header names mysqldump, mariadb-dump, pg_dump or pg_dumpall even without its trailer ('"+dumpTrailer+"', '-- PostgreSQL database dump complete')")
	fs.Var(&o.serverOptions, agentapi.FlagServerOption, "server option name=value (repeatable)")
	fs.Var(&o.keepAccounts, agentapi.FlagKeepAccount, "account the dumps created to keep, user or user@host (repeatable); every other is dropped")
	fs.StringVar(&o.progressAddr, agentapi.FlagProgressAddr, fmt.Sprintf(":%d", agentapi.ProgressPort), "address serving GET "+agentapi.ProgressPath+"; empty disables it")
	fs.StringVar(&o.terminationLog, agentapi.FlagTerminationLog, agentapi.TerminationLog, "file receiving the outcome")
	fs.StringVar(&o.postImportFile, agentapi.FlagPostImportSQLFile, agentapi.PostImportFile, "SQL script run after the load, if present")
	fs.DurationVar(&o.logInterval, "log-interval", 5*time.Second, "how often progress is logged")
	fs.StringVar(&o.keepAgent, agentapi.FlagKeepAgent, "", "copy this binary there, into the template volume, for the clones to run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, nil
}

func (o importOptions) serverLogOrStderr() io.Writer {
	if o.serverLog == nil {
		return os.Stderr
	}
	return o.serverLog
}

func runImport(ctx context.Context, args []string) error {
	o, err := parseImportFlags(args)
	if err != nil {
		return err
	}
	return importAndReport(ctx, o)
}

// importAndReport imports and leaves the report for the operator whatever the outcome: by then
// the server the import started has stopped, killed if the import failed or was stopped.
func importAndReport(ctx context.Context, o importOptions) error {
	report, err := importDumps(ctx, o, time.Now)
	if err != nil {
		report = failureReport(ctx, err)
	}
	b, _ := json.Marshal(report)
	writeTerminationLog(o.terminationLog, string(b))
	if err != nil {
		return err
	}
	log.Printf("import done: %s", b)
	return nil
}

// importFailure is an import error with the reason the operator shows in conditions and events.
type importFailure struct {
	reason string
	err    error
}

func (f *importFailure) Error() string { return f.err.Error() }
func (f *importFailure) Unwrap() error { return f.err }

func failWith(reason string, err error) error { return &importFailure{reason: reason, err: err} }

// withDefaultReason gives err a reason unless a more precise one is already in its chain.
func withDefaultReason(reason string, err error) error {
	var f *importFailure
	if errors.As(err, &f) {
		return err
	}
	return failWith(reason, err)
}

// failureReport turns an import error into the report the operator reads. An import stopped from
// outside (the pod deleted, evicted or preempted) is Interrupted: another attempt may succeed.
func failureReport(ctx context.Context, err error) agentapi.Report {
	r := agentapi.Report{Outcome: agentapi.OutcomeFailed, Reason: agentapi.ReasonServerError, Message: escapeNonPrintable(err.Error())}
	var f *importFailure
	if errors.As(err, &f) {
		r.Reason = f.reason
	}
	if ctx.Err() != nil {
		r.Outcome, r.Reason = agentapi.OutcomeInterrupted, agentapi.ReasonAgentStopped
		r.Message = "the import was stopped before it finished: " + r.Message
	}
	if r.Reason == agentapi.ReasonSourceStalled {
		r.Outcome = agentapi.OutcomeInterrupted
	}
	r.Message = clip(r.Message, agentapi.MaxMessageBytes)
	return r
}

// importDumps runs the whole import: initialise, start for bulk load, load every file, run the
// post-import SQL, shut down cleanly. Any failure stops the server and returns a message that
// names the file, line and statement, and no snapshot will be taken.
func importDumps(ctx context.Context, o importOptions, now func() time.Time) (agentapi.Report, error) {
	started := now()
	anyEngine, err := engine.Lookup(o.engine)
	if err != nil {
		return agentapi.Report{}, failWith(agentapi.ReasonInvalidOptions, err)
	}
	var eng engine.MySQLFamily
	var extra []string
	switch e := anyEngine.(type) {
	case engine.PostgreSQL:
		err = validSettings(o.serverOptions)
	case engine.MySQLFamily:
		eng = e
		extra, err = serverOptions(o.serverOptions)
	default:
		err = fmt.Errorf("engine %q has no import", o.engine)
	}
	if err != nil {
		return agentapi.Report{}, failWith(agentapi.ReasonInvalidOptions, err)
	}
	t := newTracker(now)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := serveProgress(ctx, o.progressAddr, t); err != nil {
		return agentapi.Report{}, err
	}
	go logProgress(ctx, t, o.logInterval)

	files, err := o.source.files(ctx)
	if err != nil {
		return agentapi.Report{}, err
	}
	var backup *physicalBackup
	if eng != nil {
		if files, backup, err = detectPhysical(ctx, o.source, files); err != nil {
			return agentapi.Report{}, err
		}
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	t.setTotal(total)

	var agentSum string
	if o.keepAgent != "" {
		if agentSum, err = keepAgent(o.keepAgent); err != nil {
			return agentapi.Report{}, err
		}
	}
	run := importRun{files: files, tracker: t, total: total, started: started, now: now, agentSum: agentSum}
	if pg, ok := anyEngine.(engine.PostgreSQL); ok {
		return importPostgres(ctx, o, pg, run)
	}
	if backup != nil {
		return importPhysical(ctx, o, eng, extra, run, backup)
	}
	if err := initDatadir(ctx, eng, o.datadir); err != nil {
		return agentapi.Report{}, err
	}
	logBytes, err := redoLogSize(o.datadir)
	if err != nil {
		return agentapi.Report{}, err
	}
	opts := append(eng.BulkLoadOptions(bufferPoolSize(), logBytes), extra...)
	srv, err := startServer(ctx, eng, o.datadir, o.runDir, opts, o.serverLogOrStderr())
	if err != nil {
		return agentapi.Report{}, err
	}
	ok := false
	defer func() {
		if !ok {
			srv.kill()
		}
	}()
	if err := srv.exec(ctx, eng.BeforeLoadSQL()...); err != nil {
		return agentapi.Report{}, fmt.Errorf("prepare bulk load: %w", err)
	}
	initialAccounts, err := srv.accounts(ctx)
	if err != nil {
		return agentapi.Report{}, err
	}

	t.setStep(agentapi.StepLoading)
	if err := loadFiles(ctx, eng, srv, o, files, t, &total); err != nil {
		t.setStep(agentapi.StepFailed)
		return agentapi.Report{}, err
	}

	accountsDropped, err := finishImport(ctx, o, eng, srv, t, initialAccounts)
	if err != nil {
		return agentapi.Report{}, err
	}
	ok = true
	return run.succeeded(o.datadir, accountsDropped)
}

// keepAgent copies the agent into the template volume and returns its checksum.
func keepAgent(path string) (string, error) {
	if err := Install(path); err != nil {
		return "", fmt.Errorf("keep the agent in the template volume: %w", err)
	}
	return FileSHA256(path)
}

// finishImport runs what follows the load on a MariaDB or MySQL server, from dumps or from a
// backup: afterLoad, then the clean, slow shutdown. It returns how many accounts it dropped.
func finishImport(ctx context.Context, o importOptions, eng engine.MySQLFamily, srv *server, t *tracker, initial []engine.Account) (int, error) {
	accountsDropped, err := afterLoad(ctx, o, t,
		func(in sqlInput) error { return loadStream(ctx, eng, srv.socket, in) },
		srv.requireUserTables,
		func(ctx context.Context) (int, error) {
			return srv.dropForeignAccounts(ctx, o.keepAccounts, initial)
		})
	if err != nil {
		return 0, err
	}
	if err := srv.exec(ctx, eng.AfterLoadSQL()...); err != nil {
		return 0, fmt.Errorf("finish bulk load: %w", err)
	}
	t.setStep(agentapi.StepShuttingDown)
	if err := srv.shutdown(ctx); err != nil {
		return 0, err
	}
	return accountsDropped, nil
}

// afterLoad is what an import of any engine does once the dumps are in: the template's
// post-import SQL through load, the check that the dumps held tables, and, before the clean
// shutdown, the dumps' accounts dropped or locked, so that no clone ever has one.
func afterLoad(ctx context.Context, o importOptions, t *tracker, load func(sqlInput) error,
	requireUserTables func(context.Context) error, dropAccounts func(context.Context) (int, error)) (int, error) {
	t.setStep(agentapi.StepPostImport)
	if err := runPostImport(o.postImportFile, load); err != nil {
		t.setStep(agentapi.StepFailed)
		return 0, err
	}
	if err := requireUserTables(ctx); err != nil {
		t.setStep(agentapi.StepFailed)
		return 0, err
	}
	n, err := dropAccounts(ctx)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		log.Printf("%d accounts the dumps created can no longer log in", n)
	}
	return n, markAccountsDropped(o.datadir)
}

// succeeded is the report of an import that loaded everything and shut the server down cleanly.
func (run importRun) succeeded(datadir string, accountsDropped int) (agentapi.Report, error) {
	run.tracker.setStep(agentapi.StepDone)
	size, err := dirSize(datadir)
	if err != nil {
		return agentapi.Report{}, err
	}
	return agentapi.Report{
		Outcome:         agentapi.OutcomeSucceeded,
		BytesRead:       run.tracker.snapshot().BytesDone,
		Files:           len(run.files),
		DurationSeconds: run.now().Sub(run.started).Seconds(),
		DatadirBytes:    size,
		AgentSHA256:     run.agentSum,
		AccountsDropped: accountsDropped,
	}, nil
}

// loadFiles loads the source's files one after the other, or a mydumper directory as a whole.
func loadFiles(ctx context.Context, eng engine.MySQLFamily, srv *server, o importOptions, files []dumpFile, t *tracker, total *int64) error {
	if dir, ok := o.source.mydumperDir(); ok {
		return loadMydumper(ctx, eng, srv, dir, files, t, total, loadWorkers())
	}
	for _, f := range files {
		if err := loadFile(ctx, eng, srv, f, t, total, o.allowMissingTrailer); err != nil {
			return err
		}
	}
	return nil
}

// loadFile streams one file through decompression into the server.
func loadFile(ctx context.Context, eng engine.MySQLFamily, srv *server, f dumpFile, t *tracker, total *int64, allowMissingTrailer bool) error {
	in, closeSQL, err := openSQL(ctx, f, t, total)
	if err != nil {
		return err
	}
	defer closeSQL()
	in.dump, in.allowMissingTrailer = true, allowMissingTrailer
	log.Printf("loading %s", f.Name)
	return loadSplit(ctx, eng, srv.socket, in, loadWorkers())
}

// openSQL opens a file as SQL, decompressed, its bytes counted by the tracker, checked not to be
// empty. What the SQL must end with is for the caller to say (sqlInput.dump).
func openSQL(ctx context.Context, f dumpFile, t *tracker, total *int64) (sqlInput, func(), error) {
	t.setFile(f.Name)
	body, size, err := f.Open(ctx)
	if err != nil {
		return sqlInput{}, nil, withDefaultReason(agentapi.ReasonSourceError, fmt.Errorf("open %s: %w", f.Name, err))
	}
	if f.Size == 0 && size > 0 {
		t.setTotal(atomic.AddInt64(total, size))
	}
	counted := &countingReader{r: body, t: t}
	// A 0-byte file is no dump: not even the decompressor's header is there to be checked.
	raw := bufio.NewReaderSize(counted, 64<<10)
	if _, err := raw.Peek(1); err == io.EOF {
		body.Close()
		return sqlInput{}, nil, f.emptyFailure()
	} else if err != nil {
		body.Close()
		return sqlInput{}, nil, failWith(readFailureReason(err), fmt.Errorf("%s: byte 0: %w", f.Name, err))
	}
	sqlStream, err := decompressor(f.Name, raw)
	if err != nil {
		body.Close()
		return sqlInput{}, nil, failWith(readFailureReason(err), fmt.Errorf("%s: byte 0: %w", f.Name, err))
	}
	in := sqlInput{name: f.Name, r: sqlStream}
	if compression(f.Name) != "" {
		in.file = counted
	}
	return in, func() { sqlStream.Close(); body.Close() }, nil
}

// runPostImport runs the template's post-import SQL through load: the inline statements, then
// the script.
func runPostImport(file string, load func(sqlInput) error) error {
	if inline := strings.TrimSpace(os.Getenv(agentapi.EnvPostImportSQL)); inline != "" {
		log.Print("running the post-import statements")
		if err := load(sqlInput{name: "spec.postImportSQL.statements", r: strings.NewReader(inline + "\n")}); err != nil {
			return postImportFailure(err)
		}
	}
	if file == "" {
		return nil
	}
	script, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("post-import script: %w", err)
	}
	defer script.Close()
	log.Printf("running the post-import script %s", file)
	return postImportFailure(load(sqlInput{name: "spec.postImportSQL.configMapRef", r: script}))
}

// postImportFailure tells the template's own SQL failing from the dumps failing.
func postImportFailure(err error) error {
	var f *importFailure
	if errors.As(err, &f) && f.reason == agentapi.ReasonSQLError {
		return failWith(agentapi.ReasonPostImportSQLFailed, err)
	}
	return err
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// FileSHA256 is the hex SHA-256 of a file: how the import names the agent it keeps in a template
// volume, and how the manager names its own binary to compare with it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
