package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/myaas/myaas/internal/agentapi"
	"github.com/myaas/myaas/internal/engine"
)

// A physical backup (mariadb-backup, XtraBackup) becomes a template without SQL: it is extracted
// into the datadir, prepared, and started once for the post-import SQL and the accounts.

// backupKind is the shape a physical backup arrives in.
type backupKind string

const (
	backupXbstream  backupKind = "xbstream"
	backupTar       backupKind = "tar"
	backupDirectory backupKind = "directory"
)

// xbstreamMagic starts every chunk of an xbstream, MariaDB's and Percona's alike.
const xbstreamMagic = "XBSTCK01"

// Files a backup tool writes into a backup: 11.1+ names them mariadb_backup_*, earlier versions
// and XtraBackup xtrabackup_*.
var (
	checkpointsFiles = []string{"mariadb_backup_checkpoints", "xtrabackup_checkpoints"}
	infoFiles        = []string{"mariadb_backup_info", "xtrabackup_info"}
)

const backupConfigFile = "backup-my.cnf"

// physicalBackup is a source found to be a physical backup.
type physicalBackup struct {
	file        dumpFile
	kind        backupKind
	compression string
}

// detectPhysical tells a physical backup from SQL dumps by content: an xbstream's chunk magic, a
// tar archive, or a directory holding a backup's checkpoints file; each maybe compressed. The
// first file is opened once only: the files returned hand its open body to whoever loads it.
//
// A remote file is looked into only when its name or the template's format says it is a backup:
// opening a remote SQL dump before its server is ready would start the download's clock (and
// its stall timeout) while the datadir is still being initialised.
func detectPhysical(ctx context.Context, c sourceConfig, files []dumpFile) ([]dumpFile, *physicalBackup, error) {
	format := c.format
	if format == agentapi.SourceFormatSQL || len(files) == 0 {
		return files, nil, nil
	}
	first := files[0]
	for _, f := range files[1:] {
		if f.Dir != "" {
			return nil, nil, failWith(agentapi.ReasonInvalidBackup, fmt.Errorf("%s is a physical backup's directory, and a template takes one backup: the source matches %d files and directories; name just the backup", f.Name, len(files)))
		}
	}
	local := c.glob != ""
	var found *physicalBackup
	switch {
	case first.Dir != "":
		found = &physicalBackup{file: first, kind: backupDirectory}
	case !local && format != agentapi.SourceFormatMariaDBBackup && !backupName(first.Name):
		return files, nil, nil
	default:
		body, size, err := first.Open(ctx)
		if err != nil {
			return nil, nil, withDefaultReason(agentapi.ReasonSourceError, fmt.Errorf("open %s: %w", first.Name, err))
		}
		br := bufio.NewReaderSize(body, 256<<10)
		head, err := br.Peek(64 << 10)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			body.Close()
			return nil, nil, failWith(readFailureReason(err), fmt.Errorf("%s: byte 0: %w", first.Name, err))
		}
		kind, comp := sniffBackup(head)
		files = append([]dumpFile{heldOpen(first, br, body, size)}, files[1:]...)
		if kind != "" {
			found = &physicalBackup{file: files[0], kind: kind, compression: comp}
		}
	}
	switch {
	case found == nil && format == agentapi.SourceFormatMariaDBBackup:
		files[0].discard()
		return nil, nil, failWith(agentapi.ReasonInvalidBackup, fmt.Errorf("spec.source.format is %s but %s is neither an xbstream (chunks starting %q), a tar archive of a backup nor a backup directory", agentapi.SourceFormatMariaDBBackup, first.Name, xbstreamMagic))
	case found == nil:
		return files, nil, nil
	case len(files) > 1:
		files[0].discard()
		return nil, nil, failWith(agentapi.ReasonInvalidBackup, fmt.Errorf("%s is a physical backup (%s), and a template takes one backup: the source matches %d files; name just the backup", first.Name, found.kind, len(files)))
	}
	return files, found, nil
}

// backupName tells whether a file's name says it is a backup: .xb, .xbstream, .mbstream or .tar,
// compressed or not.
func backupName(name string) bool {
	base := strings.TrimSuffix(name, filepath.Ext(name))
	if compression(name) == "" {
		base = name
	}
	for _, ext := range []string{".xb", ".xbstream", ".mbstream", ".tar"} {
		if strings.HasSuffix(base, ext) {
			return true
		}
	}
	return false
}

// sniffBackup names the backup the first bytes of a file start, and its compression: "" for SQL.
func sniffBackup(head []byte) (backupKind, string) {
	comp := ""
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		comp = "gzip"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		comp = "zstd"
	}
	plain := head
	if comp != "" {
		r, err := decompressAs(comp, bytes.NewReader(head))
		if err != nil {
			return "", ""
		}
		plain = make([]byte, 512)
		n, _ := io.ReadFull(r, plain)
		r.Close()
		plain = plain[:n]
	}
	switch {
	case bytes.HasPrefix(plain, []byte(xbstreamMagic)):
		return backupXbstream, comp
	case len(plain) >= 262 && string(plain[257:262]) == "ustar":
		return backupTar, comp
	}
	return "", ""
}

// heldOpen is f whose first Open returns the body already opened (and peeked into).
func heldOpen(f dumpFile, r io.Reader, body io.Closer, size int64) dumpFile {
	held := &struct {
		io.Reader
		io.Closer
	}{r, body}
	open := f.Open
	f.Open = func(ctx context.Context) (io.ReadCloser, int64, error) {
		if held != nil {
			h := held
			held = nil
			return h, size, nil
		}
		return open(ctx)
	}
	f.closeHeld = func() {
		if held != nil {
			held.Close()
		}
	}
	return f
}

// importPhysical turns a physical backup into the template's datadir: extract, check its
// version against the image's server, prepare, then start the server once as an SQL import does
// after its load.
func importPhysical(ctx context.Context, o importOptions, eng engine.MySQLFamily, extra []string, run importRun, b *physicalBackup) (agentapi.Report, error) {
	t := run.tracker
	backupTool, err := findBackupTool(eng.BackupBinaries())
	if err != nil {
		return agentapi.Report{}, err
	}
	if err := os.RemoveAll(o.datadir); err != nil {
		return agentapi.Report{}, fmt.Errorf("clear datadir %s: %w", o.datadir, err)
	}
	if err := os.MkdirAll(o.datadir, 0o750); err != nil {
		return agentapi.Report{}, fmt.Errorf("create datadir %s: %w", o.datadir, err)
	}
	t.setStep(agentapi.StepLoading)
	t.setFile(b.file.Name)
	log.Printf("extracting the %s backup %s into %s", b.kind, b.file.Name, o.datadir)
	if err := extractBackup(ctx, eng, b, o.datadir, t); err != nil {
		t.setStep(agentapi.StepFailed)
		return agentapi.Report{}, err
	}
	meta, err := readBackupMeta(o.datadir, b.file.Name)
	if err != nil {
		t.setStep(agentapi.StepFailed)
		return agentapi.Report{}, err
	}
	serverVersion, err := serverBinaryVersion(ctx, eng)
	if err != nil {
		return agentapi.Report{}, err
	}
	if err := checkBackupVersion(meta.serverVersion, serverVersion, b.file.Name); err != nil {
		t.setStep(agentapi.StepFailed)
		return agentapi.Report{}, err
	}
	if meta.prepared {
		log.Printf("%s is prepared already (backup_type = log-applied)", b.file.Name)
	} else {
		t.setStep(agentapi.StepPreparing)
		if err := prepareBackup(ctx, backupTool, o.datadir, meta.serverVersion, serverVersion); err != nil {
			t.setStep(agentapi.StepFailed)
			return agentapi.Report{}, err
		}
	}
	if err := checkLayout(meta.config, extra); err != nil {
		return agentapi.Report{}, err
	}

	logBytes, err := redoLogSize(o.datadir)
	if err != nil {
		return agentapi.Report{}, err
	}
	// The backup's own accounts guard root with a password the agent does not know: the grant
	// tables are off until the agent has reset root, as after a lost root password.
	opts := append(append(eng.BulkLoadOptions(bufferPoolSize(), logBytes), extra...), "--skip-grant-tables")
	srv, err := startServer(ctx, eng, o.datadir, o.runDir, opts, o.serverLogOrStderr())
	if err != nil {
		return agentapi.Report{}, fmt.Errorf("start the server on the prepared backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			srv.kill()
		}
	}()
	if err := srv.exec(ctx, resetRootSQL...); err != nil {
		return agentapi.Report{}, fmt.Errorf("reset root on the backup's grant tables: %w", err)
	}
	// Every account but root came with the backup: none is the initialisation's.
	initial := []engine.Account{{User: "root", Host: "localhost"}}
	accountsDropped, err := finishImport(ctx, o, eng, srv, t, initial)
	if err != nil {
		return agentapi.Report{}, err
	}
	ok = true
	// The server flushed only the files it wrote to; the extracted ones may still be in the page
	// cache, which a block-level snapshot of the volume does not see.
	if err := syncFilesystem(o.datadir); err != nil {
		return agentapi.Report{}, err
	}
	return run.succeeded(o.datadir, accountsDropped)
}

func syncFilesystem(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("flush the datadir %s to its volume: %w", dir, err)
	}
	return nil
}

// resetRootSQL gives root@localhost what an SQL import's datadir has: every privilege and no
// password, which only the pod's socket can use until a clone sets its own. Other roots go with
// the backup's other accounts.
var resetRootSQL = []string{
	"FLUSH PRIVILEGES",
	"CREATE USER IF NOT EXISTS 'root'@'localhost'",
	"ALTER USER 'root'@'localhost' IDENTIFIED BY ''",
	"GRANT ALL PRIVILEGES ON *.* TO 'root'@'localhost' WITH GRANT OPTION",
}

// findBackupTool locates a tool of the image, or fails naming the image and what it lacks.
func findBackupTool(names []string) (string, error) {
	p, err := engine.FindBinary(names)
	if err == nil {
		return p, nil
	}
	image := os.Getenv(agentapi.EnvImage)
	if image == "" {
		image = "the engine image"
	} else {
		image = "image " + image
	}
	return "", failWith(agentapi.ReasonBackupToolMissing, fmt.Errorf("%s has no %s, which a physical backup needs: use an image with Debian's mariadb-backup package (or XtraBackup's, for MySQL) in spec.engine.image", image, strings.Join(names, " or ")))
}

// extractBackup writes the backup's files into datadir, counting the source's bytes.
func extractBackup(ctx context.Context, eng engine.MySQLFamily, b *physicalBackup, datadir string, t *tracker) error {
	if b.kind == backupDirectory {
		return copyBackupDir(ctx, b.file.Dir, datadir, t)
	}
	var stream string
	if b.kind == backupXbstream {
		var err error
		if stream, err = findBackupTool(eng.StreamBinaries()); err != nil {
			return err
		}
	}
	body, size, err := b.file.Open(ctx)
	if err != nil {
		return withDefaultReason(agentapi.ReasonSourceError, fmt.Errorf("open %s: %w", b.file.Name, err))
	}
	defer body.Close()
	if size > 0 {
		t.setTotal(size)
	}
	counted := &countingReader{r: body, t: t}
	plain, err := decompressAs(b.compression, counted)
	if err != nil {
		return failWith(readFailureReason(err), fmt.Errorf("%s: byte 0: %w", b.file.Name, err))
	}
	defer plain.Close()
	if b.kind == backupTar {
		err = untar(ctx, plain, datadir)
	} else {
		err = runMbstream(ctx, stream, plain, datadir)
	}
	if counted.err != nil {
		// The source's own failure explains whatever the extractor made of the cut stream.
		return failWith(readFailureReason(counted.err), fmt.Errorf("%s: byte %d: %w", b.file.Name, counted.n, counted.err))
	}
	if err != nil {
		return withDefaultReason(agentapi.ReasonInvalidBackup, fmt.Errorf("%s: %w", b.file.Name, err))
	}
	return nil
}

// runMbstream feeds the stream to `mbstream -x`, which writes the files into datadir.
func runMbstream(ctx context.Context, bin string, r io.Reader, datadir string) error {
	cmd := exec.CommandContext(ctx, bin, "-x", "-C", datadir)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 16 << 10}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	n, copyErr := io.Copy(stdin, r)
	_ = stdin.Close()
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if waitErr != nil {
		return fmt.Errorf("%s -x failed after %d bytes of the stream, which is truncated or corrupt: %w: %s", filepath.Base(bin), n, waitErr, strings.TrimSpace(tail(stderr.Bytes(), 500)))
	}
	if copyErr != nil {
		return fmt.Errorf("byte %d of the stream: %w", n, copyErr)
	}
	return nil
}

// untar extracts a tar archive of a backup into datadir. A backup packed with its directory
// (backup/ibdata1 …) is moved up, so that the datadir holds the files themselves.
func untar(ctx context.Context, r io.Reader, datadir string) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tar archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("tar archive: entry %q points outside the backup", h.Name)
		}
		dst := filepath.Join(datadir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o750); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeFile(dst, tr); err != nil {
				return fmt.Errorf("tar archive: %s: %w", h.Name, err)
			}
		default:
			log.Printf("tar archive: skipping %s, which is not a file or directory", h.Name)
		}
	}
	return hoistSingleDir(datadir)
}

// hoistSingleDir moves the files of datadir's only entry, a directory holding a backup, up into
// datadir.
func hoistSingleDir(datadir string) error {
	entries, err := os.ReadDir(datadir)
	if err != nil || len(entries) != 1 || !entries[0].IsDir() || findFile(datadir, checkpointsFiles) != "" {
		return err
	}
	top := filepath.Join(datadir, entries[0].Name())
	if findFile(top, checkpointsFiles) == "" {
		return nil
	}
	inner, err := os.ReadDir(top)
	if err != nil {
		return err
	}
	for _, e := range inner {
		if err := os.Rename(filepath.Join(top, e.Name()), filepath.Join(datadir, e.Name())); err != nil {
			return fmt.Errorf("move the backup out of %s: %w", entries[0].Name(), err)
		}
	}
	return os.Remove(top)
}

// copyBackupDir copies a backup directory (read-only in its volume) into datadir.
func copyBackupDir(ctx context.Context, src, datadir string, t *tracker) error {
	total, err := dirSize(src)
	if err != nil {
		return failWith(agentapi.ReasonSourceError, fmt.Errorf("backup directory %s: %w", src, err))
	}
	t.setTotal(total)
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return failWith(agentapi.ReasonSourceError, fmt.Errorf("backup directory: %w", err))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(datadir, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o750)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return failWith(agentapi.ReasonSourceError, fmt.Errorf("backup directory: %w", err))
			}
			defer f.Close()
			return writeFile(dst, &countingReader{r: f, t: t})
		}
		log.Printf("backup directory: skipping %s, which is not a file or directory", rel)
		return nil
	})
}

func writeFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func findFile(dir string, names []string) string {
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Mode().IsRegular() {
			return filepath.Join(dir, n)
		}
	}
	return ""
}

// backupMeta is what a backup says about itself.
type backupMeta struct {
	// prepared: its redo log is applied already (backup_type = log-applied).
	prepared bool
	// serverVersion of the server it was taken from, "" when the backup does not say.
	serverVersion string
	// config holds backup-my.cnf's options, which prepare and the server must agree with.
	config map[string]string
}

// readBackupMeta reads the checkpoints, info and backup-my.cnf files of an extracted backup. A
// stream that ends before its checkpoints file, which the tools write last, is incomplete.
func readBackupMeta(datadir, name string) (backupMeta, error) {
	var m backupMeta
	cp := findFile(datadir, checkpointsFiles)
	if cp == "" {
		return m, failWith(agentapi.ReasonInvalidBackup, fmt.Errorf("%s is incomplete: it holds no %s, which a backup tool writes last: the backup was cut short, did not finish, or is no mariadb-backup or XtraBackup backup", name, strings.Join(checkpointsFiles, " or ")))
	}
	checkpoints, err := readKeyValues(cp)
	if err != nil {
		return m, err
	}
	m.prepared = checkpoints["backup_type"] == "log-applied"
	if info := findFile(datadir, infoFiles); info != "" {
		values, err := readKeyValues(info)
		if err != nil {
			return m, err
		}
		m.serverVersion = values["server_version"]
	}
	if m.config, err = readKeyValues(filepath.Join(datadir, backupConfigFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	return m, nil
}

// readKeyValues reads "key = value" lines; comments and [sections] are skipped.
func readKeyValues(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the backup's %s: %w", filepath.Base(path), err)
	}
	values := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		values[strings.ReplaceAll(strings.TrimSpace(k), "-", "_")] = strings.TrimSpace(v)
	}
	return values, nil
}

var versionPattern = regexp.MustCompile(`(\d+)\.(\d+)\.(\d+)`)

// parseVersion reads major.minor.patch out of a version string such as 10.11.19-MariaDB-0+deb12u1.
func parseVersion(s string) ([3]int, bool) {
	m := versionPattern.FindStringSubmatch(s)
	if m == nil {
		return [3]int{}, false
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v, true
}

// serverBinaryVersion is the version of the image's server, from its --version.
func serverBinaryVersion(ctx context.Context, eng engine.MySQLFamily) (string, error) {
	bin, err := engine.FindBinary(eng.ServerBinaries())
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, bin, "--no-defaults", "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", bin, err, strings.TrimSpace(string(out)))
	}
	_, rest, _ := strings.Cut(string(out), " Ver ")
	v := versionPattern.FindString(rest)
	if v == "" {
		return "", fmt.Errorf("%s --version: no version in %q", bin, strings.TrimSpace(string(out)))
	}
	return v, nil
}

// checkBackupVersion refuses a backup from a newer release series than the image's server, whose
// files that server may not read (and that no downgrade path is documented for). A newer patch
// release of the same series keeps its file formats.
func checkBackupVersion(backup, server, name string) error {
	b, ok := parseVersion(backup)
	if !ok {
		log.Printf("%s does not say which server version it comes from: not compared with the image's %s", name, server)
		return nil
	}
	s, _ := parseVersion(server)
	// mariadb-backup prepares only what a server of its own version or an older one wrote: a newer
	// release, even of the same series, may have changed the redo log it must apply.
	if slices.Compare(b[:], s[:]) > 0 {
		return failWith(agentapi.ReasonBackupFromNewerServer, fmt.Errorf("%s comes from a newer server than the image's: the backup is of %s, the image's server is %s; use an image of %d.%d.%d or later in spec.engine.image", name, backup, server, b[0], b[1], b[2]))
	}
	return nil
}

// prepareBackup applies the backup's redo log, so that the datadir is consistent, with the
// options of its backup-my.cnf and a buffer pool sized like the server's.
func prepareBackup(ctx context.Context, bin, datadir, backupVersion, serverVersion string) error {
	defaults := "--no-defaults"
	if _, err := os.Stat(filepath.Join(datadir, backupConfigFile)); err == nil {
		defaults = "--defaults-file=" + filepath.Join(datadir, backupConfigFile)
	}
	log.Printf("preparing the backup with %s", filepath.Base(bin))
	cmd := exec.CommandContext(ctx, bin, defaults, "--prepare", "--target-dir="+datadir,
		fmt.Sprintf("--use-memory=%d", bufferPoolSize()))
	var out bytes.Buffer
	cmd.Stdout = &limitedBuffer{buf: &out, max: 64 << 10}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		versions := ""
		if backupVersion != "" {
			versions = fmt.Sprintf(" (backup of %s, image's server %s)", backupVersion, serverVersion)
		}
		return failWith(agentapi.ReasonBackupPrepareFailed, fmt.Errorf("%s --prepare failed%s: %w: %s", filepath.Base(bin), versions, err, strings.TrimSpace(tail(out.Bytes(), 600))))
	}
	return nil
}

// checkLayout compares the backup's file layout options with the server's: a datadir made with
// another page size or system tablespace does not open otherwise. The template's own settings
// (spec.engine.config) are what every clone starts with, so they must say so.
func checkLayout(backupConfig map[string]string, extra []string) error {
	set := map[string]string{}
	for _, o := range extra {
		k, v, _ := strings.Cut(strings.TrimPrefix(o, "--"), "=")
		set[strings.ReplaceAll(k, "-", "_")] = v
	}
	defaults := map[string]string{"innodb_page_size": "16384", "innodb_data_file_path": "ibdata1:12M:autoextend"}
	for _, name := range []string{"innodb_page_size", "innodb_data_file_path"} {
		want, ok := backupConfig[name]
		if !ok {
			continue
		}
		have, given := set[name]
		if !given {
			have = defaults[name]
		}
		if !sameLayout(name, want, have) {
			return failWith(agentapi.ReasonInvalidOptions, fmt.Errorf("the backup was taken with %s=%s and the template's server would use %s: set spec.engine.config %s: %q, which every instance needs too", name, want, have, name, want))
		}
	}
	return nil
}

// sameLayout compares two values of a layout option. The system tablespace's files must be the
// same; their sizes may differ, as autoextend grows the last one.
func sameLayout(name, a, b string) bool {
	if name != "innodb_data_file_path" {
		return strings.EqualFold(normalizeSize(a), normalizeSize(b))
	}
	files := func(s string) []string {
		var names []string
		for _, f := range strings.Split(s, ";") {
			n, _, _ := strings.Cut(f, ":")
			names = append(names, n)
		}
		return names
	}
	return strings.Join(files(a), ";") == strings.Join(files(b), ";")
}

func normalizeSize(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.ParseInt(strings.TrimSuffix(s, "k"), 10, 64); err == nil && strings.HasSuffix(s, "k") {
		return strconv.FormatInt(n<<10, 10)
	}
	return s
}
