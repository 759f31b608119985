package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// pipeline is what a CI run says about itself: whose instance it needs, and how to label it.
type pipeline struct {
	Name       string // instance name, a DNS label
	Repository string // OWNER/NAME
	PR         string // pull/merge request number, "" on a branch pipeline
	Branch     string
	Closed     bool // the pull request was closed or merged
}

func (p pipeline) labels() map[string]string {
	l := map[string]string{}
	if p.Repository != "" {
		l[LabelRepository] = sanitizeLabelValue(p.Repository)
	}
	if p.PR != "" {
		l[LabelPR] = p.PR
	}
	if p.Branch != "" {
		l[LabelBranch] = sanitizeLabelValue(p.Branch)
	}
	return l
}

// instanceName is "<prefix>pr-<N>" for a pull request and "<prefix><branch>" otherwise.
func instanceName(prefix, requestWord, pr, branch string) string {
	if pr != "" {
		return sanitizeName(prefix + requestWord + "-" + pr)
	}
	return sanitizeName(prefix + branch)
}

// githubEvent holds the fields of $GITHUB_EVENT_PATH the plugin reads.
type githubEvent struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest *struct {
		Number int `json:"number"`
		Head   struct {
			Ref string `json:"ref"`
		} `json:"head"`
	} `json:"pull_request"`
}

// githubPipeline reads the workflow run's environment as GitHub Actions sets it.
func githubPipeline(getenv func(string) string, prefix string) (pipeline, error) {
	p := pipeline{Repository: getenv("GITHUB_REPOSITORY"), Branch: getenv("GITHUB_HEAD_REF")}
	if p.Branch == "" {
		p.Branch = getenv("GITHUB_REF_NAME")
	}
	if path := getenv("GITHUB_EVENT_PATH"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return p, fmt.Errorf("read the workflow event: %w", err)
		}
		var ev githubEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			return p, fmt.Errorf("parse the workflow event %s: %w", path, err)
		}
		if ev.PullRequest != nil {
			n := ev.PullRequest.Number
			if n == 0 {
				n = ev.Number
			}
			p.PR = strconv.Itoa(n)
			if ev.PullRequest.Head.Ref != "" {
				p.Branch = ev.PullRequest.Head.Ref
			}
			p.Closed = ev.Action == "closed"
		}
	}
	if p.PR == "" && p.Branch == "" {
		return p, fmt.Errorf("no pull request in the event and no GITHUB_HEAD_REF/GITHUB_REF_NAME: pass --name")
	}
	p.Name = instanceName(prefix, "pr", p.PR, p.Branch)
	return p, nil
}

// gitlabPipeline reads GitLab CI's predefined variables.
func gitlabPipeline(getenv func(string) string, prefix string) (pipeline, error) {
	p := pipeline{Repository: getenv("CI_PROJECT_PATH"), PR: getenv("CI_MERGE_REQUEST_IID"), Branch: getenv("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")}
	if p.Branch == "" {
		p.Branch = getenv("CI_COMMIT_REF_NAME")
	}
	if p.PR == "" && p.Branch == "" {
		return p, fmt.Errorf("neither CI_MERGE_REQUEST_IID nor CI_COMMIT_REF_NAME is set: pass --name")
	}
	p.Name = instanceName(prefix, "mr", p.PR, p.Branch)
	return p, nil
}

type ciOptions struct {
	create    createOptions
	name      string
	prefix    string
	exportEnv bool
	dotenv    string
	timeout   time.Duration
}

func newNameCmd(e *env) *cobra.Command {
	var ciKind, prefix string
	cmd := &cobra.Command{
		Use:   "name [RAW_NAME] [--ci github|gitlab]",
		Short: "Print the instance name for a branch or pull request: a valid, collision-safe DNS label",
		Example: `  kubectl myaas name feature/Login_Form   # feature-login-form
  kubectl myaas name --ci github          # pr-123 in a pull_request workflow`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 1 {
				fmt.Fprintln(e.Out, sanitizeName(prefix+args[0]))
				return nil
			}
			p, err := ciPipeline(ciKind, prefix)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.Out, p.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&ciKind, "ci", "", "read the name from the CI environment: github or gitlab")
	cmd.Flags().StringVar(&prefix, "prefix", "", "prefix for the name (e.g. the repository's name when several share a namespace)")
	return cmd
}

func ciPipeline(kind, prefix string) (pipeline, error) {
	switch kind {
	case "github":
		return githubPipeline(os.Getenv, prefix)
	case "gitlab":
		return gitlabPipeline(os.Getenv, prefix)
	}
	return pipeline{}, fmt.Errorf("--ci %q: want github or gitlab", kind)
}

func newCICmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ci",
		Short: "One database per pull request: the steps the GitHub action and the GitLab template run",
	}
	for _, kind := range []string{"github", "gitlab"} {
		sub := &cobra.Command{Use: kind, Short: "Steps for " + kind + " pipelines"}
		sub.AddCommand(newCICreateCmd(e, kind), newCIDeleteCmd(e, kind))
		cmd.AddCommand(sub)
	}
	return cmd
}

func newCICreateCmd(e *env, kind string) *cobra.Command {
	o := &ciOptions{}
	cmd := &cobra.Command{
		Use:   "create --template TEMPLATE",
		Short: "Create (or reuse) the pipeline's instance, labelled with repository and PR, and export its details",
		Long: `Create the instance of this pull request or branch, or reuse it on the next push, and wait
until it is Ready. GitHub: the password is masked (::add-mask::), the details are written to
$GITHUB_OUTPUT (host, port, username, password, database, uri, jdbc-uri, name) and, with
--export-env, to $GITHUB_ENV as MYAAS_*. GitLab: the MYAAS_* variables are written to the
--dotenv file, for artifacts:reports:dotenv.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := parseTemplateRef(o.create.template, ""); err != nil {
				return err
			}
			p, err := e.ciStart(kind, o)
			if err != nil {
				return err
			}
			if p.Closed {
				fmt.Fprintf(e.Err, "pull request %s is closed: no instance created (run the delete step on closed events)\n", p.PR)
				return nil
			}
			o.create.wait = true
			conn, err := e.create(cmd.Context(), p.Name, &o.create, p.labels())
			if err != nil {
				return err
			}
			return e.exportCI(kind, o, conn)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.create.template, "template", "t", "", "DatabaseTemplate to clone (required): NAME, or NAMESPACE/NAME for a template another namespace shares")
	f.DurationVar(&o.create.ttl, "ttl", 24*time.Hour, "delete the instance this long after its creation, should the close event be missed")
	f.DurationVar(&o.create.timeout, "timeout", 5*time.Minute, "how long to wait for Ready")
	bindCINameFlags(cmd, o)
	if kind == "github" {
		f.BoolVar(&o.exportEnv, "export-env", true, "also write MYAAS_* to $GITHUB_ENV for the job's later steps")
	} else {
		f.StringVar(&o.dotenv, "dotenv", "myaas.env", "file to write MYAAS_* to, for artifacts:reports:dotenv")
	}
	_ = cmd.MarkFlagRequired("template")
	return cmd
}

func newCIDeleteCmd(e *env, kind string) *cobra.Command {
	o := &ciOptions{}
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete the pipeline's instance (on a closed pull request or a stopped environment)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := e.ciStart(kind, o)
			if err != nil {
				return err
			}
			return e.deleteInstances(cmd.Context(), []string{p.Name}, true, o.timeout)
		},
	}
	bindCINameFlags(cmd, o)
	cmd.Flags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait until it is gone")
	return cmd
}

func bindCINameFlags(cmd *cobra.Command, o *ciOptions) {
	cmd.Flags().StringVar(&o.name, "name", "", "instance name (default: pr-N / mr-N, or the branch, sanitised)")
	cmd.Flags().StringVar(&o.prefix, "prefix", "", "prefix of the derived name")
}

// ciStart reads the pipeline's instance (named by --name, or after the pull request or branch)
// and connects to the cluster.
func (e *env) ciStart(kind string, o *ciOptions) (pipeline, error) {
	p, err := ciPipeline(kind, o.prefix)
	if o.name != "" {
		p.Name, err = o.name, checkInstanceName(o.name)
	}
	if err != nil {
		return p, err
	}
	return p, e.connectCluster()
}

func (e *env) exportCI(kind string, o *ciOptions, conn connection) error {
	if kind == "gitlab" {
		f, err := os.OpenFile(o.dotenv, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("write %s: %w", o.dotenv, err)
		}
		// The dotenv report takes values literally, as $GITHUB_ENV does.
		err = writeGitHubFile(f, conn.envPairs())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", o.dotenv, err)
		}
		fmt.Fprintf(e.Err, "instance %s Ready; MYAAS_* written to %s\n", conn.Name, o.dotenv)
		return nil
	}
	// Masked before anything could print it: the runner hides the password in every later line,
	// including inside the URIs.
	fmt.Fprintf(e.Out, "::add-mask::%s\n", conn.Password)
	if err := appendGitHubFile("GITHUB_OUTPUT", conn.githubOutputs()); err != nil {
		return err
	}
	if o.exportEnv {
		if err := appendGitHubFile("GITHUB_ENV", conn.envPairs()); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.Err, "instance %s Ready at %s:%d (database %s)\n", conn.Name, conn.Host, conn.Port, conn.Database)
	return nil
}

func appendGitHubFile(variable string, pairs [][2]string) error {
	path := os.Getenv(variable)
	if path == "" {
		return fmt.Errorf("$%s is not set: run this step in a GitHub Actions job", variable)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open $%s: %w", variable, err)
	}
	err = writeGitHubFile(f, pairs)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write $%s: %w", variable, err)
	}
	return nil
}
