package main

import (
	"os"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The action's metadata and the plugin agree: every input reaches the step, and the outputs are
// exactly what `ci github create` writes to $GITHUB_OUTPUT.
func TestGitHubActionMatchesThePlugin(t *testing.T) {
	b, err := os.ReadFile("../../ci/github/action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var action struct {
		Inputs  map[string]any `json:"inputs"`
		Outputs map[string]struct {
			Value string `json:"value"`
		} `json:"outputs"`
		Runs struct {
			Steps []struct {
				ID  string            `json:"id"`
				Run string            `json:"run"`
				Env map[string]string `json:"env"`
			} `json:"steps"`
		} `json:"runs"`
	}
	if err := yaml.Unmarshal(b, &action); err != nil {
		t.Fatal(err)
	}
	step := action.Runs.Steps[0]
	for in := range action.Inputs {
		env := "INPUT_" + strings.ToUpper(strings.ReplaceAll(in, "-", "_"))
		if step.Env[env] != "${{ inputs."+in+" }}" {
			t.Errorf("input %s does not reach the step as %s (env %v)", in, env, step.Env)
		}
	}
	var outs, written []string
	for name, o := range action.Outputs {
		outs = append(outs, name)
		if o.Value != "${{ steps."+step.ID+".outputs."+name+" }}" {
			t.Errorf("output %s = %q", name, o.Value)
		}
	}
	for _, kv := range testConn.githubOutputs() {
		written = append(written, kv[0])
	}
	sort.Strings(outs)
	sort.Strings(written)
	if strings.Join(outs, ",") != strings.Join(written, ",") {
		t.Errorf("action outputs %v, the plugin writes %v", outs, written)
	}
	script, err := os.Stat("../../ci/github/myaas.sh")
	if err != nil || script.Mode()&0o111 == 0 || !strings.Contains(step.Run, "myaas.sh") {
		t.Errorf("the step %q does not run an executable myaas.sh: %v", step.Run, err)
	}
}

func TestGitLabTemplate(t *testing.T) {
	b, err := os.ReadFile("../../ci/gitlab/myaas.gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var jobs map[string]struct {
		Script      []string `json:"script"`
		Environment struct {
			Name       string `json:"name"`
			Action     string `json:"action"`
			OnStop     string `json:"on_stop"`
			AutoStopIn string `json:"auto_stop_in"`
		} `json:"environment"`
		Artifacts struct {
			Reports struct {
				Dotenv string `json:"dotenv"`
			} `json:"reports"`
		} `json:"artifacts"`
	}
	if err := yaml.Unmarshal(b, &jobs); err != nil {
		t.Fatal(err)
	}
	create, del := jobs["myaas:create"], jobs["myaas:delete"]
	if create.Environment.OnStop != "myaas:delete" || create.Environment.AutoStopIn == "" || del.Environment.Action != "stop" ||
		create.Environment.Name != del.Environment.Name {
		t.Errorf("environments: create %+v, delete %+v", create.Environment, del.Environment)
	}
	if d := create.Artifacts.Reports.Dotenv; d == "" || !strings.Contains(strings.Join(create.Script, " "), "--dotenv "+d) {
		t.Errorf("the dotenv report %q is not what the create job writes: %v", d, create.Script)
	}
	if !strings.Contains(strings.Join(del.Script, " "), "ci gitlab delete") {
		t.Errorf("delete job: %v", del.Script)
	}
}
