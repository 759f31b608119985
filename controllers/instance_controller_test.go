package controllers

import (
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
	"github.com/myaas/myaas/internal/builder"
	"github.com/myaas/myaas/internal/mariadbtest"
)

// loopbackTo makes the controller reach every instance pod at a real MariaDB server on loopback.
func loopbackTo(srv *mariadbtest.Server) func(*corev1.Pod, int32) string {
	return func(*corev1.Pod, int32) string { return srv.Addr }
}

func newInstance(t *testing.T, ns, name, template string, mutate ...func(*myaasv1.DatabaseInstance)) *myaasv1.DatabaseInstance {
	t.Helper()
	inst := &myaasv1.DatabaseInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       myaasv1.DatabaseInstanceSpec{TemplateRef: myaasv1.TemplateReference{Name: template}},
	}
	for _, m := range mutate {
		m(inst)
	}
	if err := k8s.Create(bg, inst); err != nil {
		t.Fatal(err)
	}
	return inst
}

// playInstancePod creates the StatefulSet's pod, Ready, as the StatefulSet controller and kubelet would.
func playInstancePod(t *testing.T, ns, instance string) *corev1.Pod {
	t.Helper()
	return playInstancePodWith(t, ns, instance, true)
}

// playInstancePodWith creates the pod with its server container running, Ready or not yet probed.
func playInstancePodWith(t *testing.T, ns, instance string, ready bool) *corev1.Pod {
	t.Helper()
	return playInstancePodStatus(t, ns, instance, func(pod *corev1.Pod) {
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP = "127.0.0.1"
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: builder.DatabaseContainer, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:0",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}}
		if ready {
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		}
	})
}

// playInstancePodStatus creates the StatefulSet's pod, with the status the kubelet would post.
func playInstancePodStatus(t *testing.T, ns, instance string, status func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	eventually(t, 20*time.Second, "statefulset", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: instance}, sts)
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: instance + "-0", Labels: sts.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(sts, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))}},
		Spec: *sts.Spec.Template.Spec.DeepCopy(),
	}
	for _, claim := range sts.Spec.VolumeClaimTemplates {
		// The StatefulSet controller would adopt an existing PVC of this name: the operator's own.
		pvc := &corev1.PersistentVolumeClaim{}
		name := fmt.Sprintf("%s-%s-0", claim.Name, instance)
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, pvc); err != nil {
			t.Fatalf("the clone PVC %s must exist before the StatefulSet's pod: %v", name, err)
		}
		if owner := metav1.GetControllerOf(pvc); owner == nil || owner.Kind != "DatabaseInstance" || owner.Name != instance {
			t.Fatalf("clone PVC %s is owned by %+v, not by its instance: deleting the instance would leave it", name, owner)
		}
		if pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Name != claim.Spec.DataSource.Name {
			t.Fatalf("clone PVC %s has data source %+v, want snapshot %s", name, pvc.Spec.DataSource, claim.Spec.DataSource.Name)
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fmt.Sprintf("%s-%s-0", claim.Name, instance)},
		}})
	}
	if err := k8s.Create(bg, pod); err != nil {
		t.Fatal(err)
	}
	status(pod)
	if err := k8s.Status().Update(bg, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func credentials(t *testing.T, ns, instance string) map[string]string {
	t.Helper()
	return secretData(t, ns, instance+"-credentials")
}

// adminCredentials are the operator's own: root's password and the admin account's.
func adminCredentials(t *testing.T, ns, instance string) map[string]string {
	t.Helper()
	return secretData(t, ns, instance+"-admin")
}

func secretData(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	s := &corev1.Secret{}
	eventually(t, 20*time.Second, "Secret "+name, func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, s)
	})
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

// grant plays the agent's part: the server accepts the instance's credentials.
func grant(t *testing.T, srv *mariadbtest.Server, creds map[string]string) {
	t.Helper()
	srv.Exec(t,
		fmt.Sprintf("CREATE DATABASE IF NOT EXISTS `%s`", creds["database"]),
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", creds["username"], creds["password"]),
		fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s'", creds["username"], creds["password"]),
		fmt.Sprintf("GRANT ALL ON `%s`.* TO '%s'@'%%'", creds["database"], creds["username"]))
}

func TestInstanceClonesRevisionAndIsReadyOnlyAfterLogin(t *testing.T) {
	requireEnv(t)
	srv := mariadbtest.Start(t)
	startManager(t, Options{Address: loopbackTo(srv)})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) {
		d.Spec.Engine.Config = map[string]string{"max_connections": "50"}
	})
	// The template volume lives on one node: the clone must be scheduled there. It is bound
	// before the import runs, as a real volume is.
	job := waitForImportJob(t, ns, "shop", 1)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + ns},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")},
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "test.csi", VolumeHandle: "v1"}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "topology.test/node", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-a"}}},
			}}}},
		},
	}
	if err := k8s.Create(bg, pv); err != nil {
		t.Fatal(err)
	}
	pvc := &corev1.PersistentVolumeClaim{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "shop-r1"}, pvc); err != nil {
		t.Fatal(err)
	}
	pvc.Spec.VolumeName = pv.Name
	if err := k8s.Update(bg, pvc); err != nil {
		t.Fatal(err)
	}

	playImportPod(t, job, terminatedPod(`{"outcome":"Succeeded","bytesRead":1048576,"files":1,"durationSeconds":3.5,"datadirBytes":52428800,"agentSHA256":"`+testAgentSHA256+`","accountsDropped":2}`, 0))
	playJobFinished(t, job, true)
	playSnapshotReady(t, ns, "shop", 1, "2Gi")
	waitForLatestRevision(t, ns, "shop", 1)
	eventually(t, 10*time.Second, "the import's event counts the dump's accounts dropped", func() error {
		for _, e := range eventsFor(t, ns, "shop") {
			if e.Reason == EventImportSucceeded && strings.Contains(e.Message, "dropped 2 accounts the dump created") {
				return nil
			}
		}
		return fmt.Errorf("no such event")
	})

	inst := newInstance(t, ns, "feature-login", "shop", func(i *myaasv1.DatabaseInstance) {
		i.Spec.Database = "shop"
		i.Spec.Username = "dev"
	})
	creds := credentials(t, ns, "feature-login")
	for _, key := range []string{"host", "port", "username", "password", "database", "uri", "jdbc-uri", "dsn", "type", "provider", "ca.crt"} {
		if creds[key] == "" {
			t.Errorf("secret key %q is empty", key)
		}
	}
	if len(creds) != 11 {
		t.Errorf("secret keys %v: the application's Secret holds only what the application logs in with", slices.Sorted(maps.Keys(creds)))
	}
	if creds["host"] != "feature-login."+ns+".svc" || creds["port"] != "3306" || creds["username"] != "dev" || creds["database"] != "shop" ||
		creds["type"] != "mysql" || creds["provider"] != "myaas" || len(creds["password"]) < 20 {
		t.Fatalf("secret %v", redact(creds))
	}
	if want := fmt.Sprintf("mysql://dev:%s@feature-login.%s.svc:3306/shop?ssl-mode=VERIFY_IDENTITY", creds["password"], ns); creds["uri"] != want {
		t.Fatalf("uri %q", redactIn(creds["uri"], creds))
	}

	sts := &appsv1.StatefulSet{}
	eventually(t, 20*time.Second, "statefulset", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "feature-login"}, sts)
	})
	claim := sts.Spec.VolumeClaimTemplates[0]
	if ds := claim.Spec.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != "shop-r1" {
		t.Fatalf("clone data source %+v", ds)
	}
	if size := claim.Spec.Resources.Requests[corev1.ResourceStorage]; size.String() != "2Gi" {
		t.Fatalf("clone size %s, want the snapshot's restore size", size.String())
	}
	aff := sts.Spec.Template.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "node-a" {
		t.Fatalf("clone not pinned to the template volume's node: %+v", aff)
	}
	if args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--server-option=max_connections=50") {
		t.Fatalf("server options not passed: %s", args)
	}
	if owner := metav1.GetControllerOf(sts); owner == nil || owner.Name != inst.Name {
		t.Fatalf("statefulset owner %+v", sts.OwnerReferences)
	}
	// Imported by this manager's own binary: the pod runs the agent kept in its clone.
	if rev := getTemplate(t, ns, "shop").Status.Revisions[0]; rev.AgentSHA256 != testAgentSHA256 || len(sts.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("revision agent %q, %d init containers", rev.AgentSHA256, len(sts.Spec.Template.Spec.InitContainers))
	}
	svc := &corev1.Service{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "feature-login"}, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "cloning phase", func() error {
		if got := getInstance(t, ns, "feature-login"); got.Status.Phase != myaasv1.InstanceCloning {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		return nil
	})

	// The pod is Ready but the server does not know the credentials yet: not Ready. The operator
	// first tells the pod which Secret version to take (the kubelet refreshes the mounted copy and
	// the agent applies it), and reports a failed login once that had its time.
	playInstancePod(t, ns, "feature-login")
	eventually(t, 20*time.Second, "the pod told to take the Secret", func() error {
		got := getInstance(t, ns, "feature-login")
		if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonApplyingCredentials); err != nil {
			return err
		}
		pod, secret := &corev1.Pod{}, &corev1.Secret{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "feature-login-0"}, pod); err != nil {
			return err
		}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "feature-login-credentials"}, secret); err != nil {
			return err
		}
		if v := pod.Annotations[annotationCredentialsVersion]; v != secret.ResourceVersion {
			return fmt.Errorf("pod told about Secret version %q, the Secret is at %q", v, secret.ResourceVersion)
		}
		return nil
	})
	eventually(t, 20*time.Second, "login failure reported", func() error {
		got := getInstance(t, ns, "feature-login")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonLoginFailed)
	})
	grant(t, srv, creds)
	eventually(t, 20*time.Second, "ready", func() error {
		got := getInstance(t, ns, "feature-login")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified)
	})
	got := getInstance(t, ns, "feature-login")
	if got.Status.Phase != myaasv1.InstanceReady || got.Status.Revision != 1 || got.Status.SecretName != "feature-login-credentials" ||
		got.Status.Endpoint == nil || got.Status.Endpoint.Port != 3306 || got.Status.TimeToReady == nil || got.Status.ReadyAt == nil {
		t.Fatalf("status %+v", got.Status)
	}
	row := tableRow(t, ns, "databaseinstances", "feature-login")
	if row["Template"] != "shop" || row["Revision"] != "1" || row["Phase"] != "Ready" || row["Endpoint"] != "feature-login."+ns+".svc" {
		t.Fatalf("kubectl get columns: %v", row)
	}
	waitForEvent(t, ns, "feature-login", EventReady)
}

// The operator's login is what Ready means: it waits neither for the kubelet's next probe nor for
// the kubelet to report the server container running, which a new pod's IP may precede (right
// after an init container, or until the kubelet's next look at the runtime).
func TestInstanceReadyOnceTheServerAcceptsTheLoginBeforeThePodProbe(t *testing.T) {
	requireEnv(t)
	srv := mariadbtest.Start(t)
	startManager(t, Options{Address: loopbackTo(srv)})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	pods := map[string]func(t *testing.T, instance string){
		"not-probed": func(t *testing.T, instance string) { playInstancePodWith(t, ns, instance, false) },
		"not-reported-running": func(t *testing.T, instance string) {
			playInstancePodStatus(t, ns, instance, func(pod *corev1.Pod) {
				pod.Status.Phase = corev1.PodPending
				pod.Status.PodIP = "127.0.0.1"
				pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
					Name: builder.DatabaseContainer, Image: pod.Spec.Containers[0].Image,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}},
				}}
			})
		},
	}
	for instance, playPod := range pods {
		t.Run(instance, func(t *testing.T) {
			newInstance(t, ns, instance, "shop")
			creds := credentials(t, ns, instance)
			playPod(t, instance)
			eventually(t, 20*time.Second, "starting while the server refuses the login", func() error {
				got := getInstance(t, ns, instance)
				return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonStarting)
			})
			if hasEvent(eventsFor(t, ns, instance), EventLoginFailed) {
				t.Fatal("a server still starting was reported as refusing the credentials")
			}
			grant(t, srv, creds)
			eventually(t, 20*time.Second, "ready once the login works", func() error {
				got := getInstance(t, ns, instance)
				return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified)
			})
			svc := &corev1.Service{}
			if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: instance}, svc); err != nil || !svc.Spec.PublishNotReadyAddresses {
				t.Fatalf("the Service must route to the pod before its probe passes (err %v)", err)
			}
		})
	}
}

func TestInstanceResetKeepsSecretAndServiceAndMovesToLatest(t *testing.T) {
	requireEnv(t)
	srv := mariadbtest.Start(t)
	mgr := startManager(t, Options{Address: loopbackTo(srv)})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop", func(d *myaasv1.DatabaseTemplate) { d.Spec.RetainRevisions = 2 })
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "dev", "shop")
	creds := credentials(t, ns, "dev")
	admin := adminCredentials(t, ns, "dev")
	grant(t, srv, creds)
	playInstancePod(t, ns, "dev")
	eventually(t, 20*time.Second, "ready on revision 1", func() error {
		if got := getInstance(t, ns, "dev"); got.Status.Phase != myaasv1.InstanceReady || got.Status.Revision != 1 {
			return fmt.Errorf("status %s r%d", got.Status.Phase, got.Status.Revision)
		}
		return nil
	})
	svc := &corev1.Service{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "dev"}, svc); err != nil {
		t.Fatal(err)
	}

	// A manager restart never regenerates the password.
	mgr.stop()
	startManager(t, Options{Address: loopbackTo(srv)})

	requestRefresh(t, ns, "shop", "nightly")
	importRevision(t, ns, "shop", 2)
	if got := getInstance(t, ns, "dev"); got.Status.Revision != 1 {
		t.Fatalf("a new revision must not move an existing instance: r%d", got.Status.Revision)
	}

	annotateInstance(t, ns, "dev", myaasv1.AnnotationReset, "2026-11-24T10:00:00Z")
	// The StatefulSet is deleted in the foreground; play the garbage collector.
	eventually(t, 20*time.Second, "old statefulset deleted", func() error {
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "dev"}, sts); err != nil {
			return err
		}
		if sts.DeletionTimestamp.IsZero() {
			return fmt.Errorf("not being deleted")
		}
		if getInstance(t, ns, "dev").Status.Phase != myaasv1.InstanceResetting {
			return fmt.Errorf("phase is not Resetting")
		}
		return nil
	})
	_ = k8s.Delete(bg, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dev-0"}}, client.GracePeriodSeconds(0))
	removeFinalizer(t, &appsv1.StatefulSet{}, ns, "dev", metav1.FinalizerDeleteDependents)

	eventually(t, 20*time.Second, "recreated on revision 2", func() error {
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "dev"}, sts); err != nil {
			return err
		}
		if !sts.DeletionTimestamp.IsZero() {
			return fmt.Errorf("old statefulset still there")
		}
		if ds := sts.Spec.VolumeClaimTemplates[0].Spec.DataSource; ds.Name != "shop-r2" {
			return fmt.Errorf("data source %s", ds.Name)
		}
		return nil
	})
	got := getInstance(t, ns, "dev")
	if got.Status.Revision != 2 || got.Status.Resets != 1 || got.Status.HandledReset != "2026-11-24T10:00:00Z" {
		t.Fatalf("status after reset %+v", got.Status)
	}
	sts := &appsv1.StatefulSet{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "dev"}, sts); err != nil {
		t.Fatal(err)
	}
	if name := sts.Spec.VolumeClaimTemplates[0].Name; name != builder.InstanceClaimName(got.UID, 1) {
		t.Fatalf("claim name %s must differ from the pre-reset one", name)
	}
	after := credentials(t, ns, "dev")
	if after["password"] != creds["password"] || !maps.Equal(adminCredentials(t, ns, "dev"), admin) {
		t.Fatal("the reset or the restart changed the credentials")
	}
	svcAfter := &corev1.Service{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "dev"}, svcAfter); err != nil || svcAfter.UID != svc.UID {
		t.Fatalf("the Service was replaced: %v", err)
	}
	playInstancePod(t, ns, "dev")
	eventually(t, 20*time.Second, "ready again", func() error {
		if got := getInstance(t, ns, "dev"); got.Status.Phase != myaasv1.InstanceReady {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		return nil
	})
}

func TestInstanceExpiresAfterTTL(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "ci-123", "shop", func(i *myaasv1.DatabaseInstance) { i.Spec.TTL = &metav1.Duration{Duration: 3 * time.Second} })
	newInstance(t, ns, "long-lived", "shop", func(i *myaasv1.DatabaseInstance) { i.Spec.TTL = &metav1.Duration{Duration: time.Hour} })
	eventually(t, 10*time.Second, "expiry in status", func() error {
		got := getInstance(t, ns, "ci-123")
		if got.Status.ExpiresAt == nil || !got.Status.ExpiresAt.Time.Equal(got.CreationTimestamp.Add(3*time.Second)) {
			return fmt.Errorf("expiresAt %v", got.Status.ExpiresAt)
		}
		return nil
	})
	eventually(t, 20*time.Second, "expired instance deleted", func() error {
		err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "ci-123"}, &myaasv1.DatabaseInstance{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "long-lived"}, &myaasv1.DatabaseInstance{}); err != nil {
		t.Fatalf("an instance that has not expired was deleted: %v", err)
	}
}

func TestInstanceWaitsForMissingTemplateAndRevision(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newInstance(t, ns, "early", "shop")
	newInstance(t, ns, "pinned", "shop", func(i *myaasv1.DatabaseInstance) { i.Spec.Revision = ptrInt32(7) })
	eventually(t, 20*time.Second, "template not found", func() error {
		got := getInstance(t, ns, "early")
		if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonTemplateNotFound); err != nil {
			return err
		}
		if msg := metaCondition(got.Status.Conditions, myaasv1.ConditionReady).Message; !strings.Contains(msg, `"shop"`) || !strings.Contains(msg, "spec.templateRef.name") {
			return fmt.Errorf("message %q", msg)
		}
		return nil
	})
	eventually(t, 10*time.Second, "TemplateNotFound event", func() error {
		if !hasEvent(eventsFor(t, ns, "early"), EventTemplateNotFound) {
			return fmt.Errorf("no TemplateNotFound event")
		}
		return nil
	})
	newTemplate(t, ns, "shop")
	eventually(t, 20*time.Second, "template not ready", func() error {
		got := getInstance(t, ns, "early")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonTemplateNotReady)
	})
	importRevision(t, ns, "shop", 1)
	eventually(t, 20*time.Second, "clone started once revision 1 exists", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "early"}, &appsv1.StatefulSet{})
	})
	waitNotReadySaying(t, ns, "pinned", myaasv1.ReasonRevisionNotFound, "revision 7", "available: 1")
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "pinned"}, &appsv1.StatefulSet{}); err == nil {
		t.Fatal("a StatefulSet was created for a revision that does not exist")
	}
}

func ptrInt32(v int32) *int32 { return &v }

// redact keeps passwords out of test output.
func redact(creds map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range creds {
		out[k] = redactIn(v, creds)
	}
	return out
}

func redactIn(s string, creds map[string]string) string {
	for _, k := range []string{"password", "root-password"} {
		if creds[k] != "" {
			s = strings.ReplaceAll(s, creds[k], "***")
		}
	}
	return s
}

// Ready must mean "clients can connect the way the Secret says": through the Service.
func TestReadinessLoginGoesThroughTheService(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	r := &DatabaseInstanceReconciler{Client: k8s}
	pod := &corev1.Pod{Status: corev1.PodStatus{PodIP: "10.244.0.9"}}
	for _, tc := range []struct {
		name      string
		clusterIP string
		wantPod   bool
	}{
		{name: "clusterip"},
		{name: "headless", clusterIP: corev1.ClusterIPNone, wantPod: true},
	} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name},
			Spec:       corev1.ServiceSpec{ClusterIP: tc.clusterIP, Ports: []corev1.ServicePort{{Port: 3306}}},
		}
		if err := k8s.Create(bg, svc); err != nil {
			t.Fatal(err)
		}
		inst := &myaasv1.DatabaseInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name}}
		got, err := r.serverAddress(bg, inst, pod, 3306)
		want := svc.Spec.ClusterIP + ":3306"
		if tc.wantPod {
			want = "10.244.0.9:3306"
		}
		if err != nil || got != want {
			t.Errorf("%s: login goes to %q, want %q (%v)", tc.name, got, want, err)
		}
	}
}

func TestServiceTypeOutsideTheAllowListIsRefused(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{}) // the default allow-list
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "exposed", "shop", func(i *myaasv1.DatabaseInstance) { i.Spec.ServiceType = corev1.ServiceTypeLoadBalancer })
	newInstance(t, ns, "inside", "shop")
	waitNotReadySaying(t, ns, "exposed", myaasv1.ReasonServiceTypeNotAllowed, "LoadBalancer", "--allowed-service-types", "allowed: ClusterIP)")
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "exposed"}, &corev1.Service{}); err == nil {
		t.Fatal("a Service of a refused type was created")
	}
	eventually(t, 20*time.Second, "an allowed type goes ahead", func() error {
		return k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "inside"}, &corev1.Service{})
	})
}

func TestIdleInstanceIsSuspendedOnceNoClientIsConnected(t *testing.T) {
	requireEnv(t)
	srv := mariadbtest.Start(t)
	startManager(t, Options{Address: loopbackTo(srv)})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	newInstance(t, ns, "quiet", "shop", func(i *myaasv1.DatabaseInstance) {
		i.Spec.Idle = &myaasv1.IdleSpec{After: metav1.Duration{Duration: 6 * time.Second}, Action: myaasv1.IdleSuspend}
	})
	creds := credentials(t, ns, "quiet")
	grant(t, srv, creds)
	// As the agent leaves a clone: the operator's admin account, with PROCESS only, logs in over
	// TCP with the admin Secret's password (this server resolves 127.0.0.1 to localhost).
	admin := adminCredentials(t, ns, "quiet")
	for _, host := range []string{"%", "localhost"} {
		srv.Exec(t, fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s'", admin["username"], host, admin["password"]),
			fmt.Sprintf("GRANT PROCESS ON *.* TO '%s'@'%s'", admin["username"], host))
	}
	playInstancePod(t, ns, "quiet")
	eventually(t, 20*time.Second, "ready", func() error {
		got := getInstance(t, ns, "quiet")
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionTrue, myaasv1.ReasonCredentialsVerified)
	})

	// A client connected, even silent, keeps the instance.
	client1, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/%s", creds["username"], creds["password"], srv.Addr, creds["database"]))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := client1.Conn(bg)
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Now().Truncate(time.Second)
	consistently(t, 10*time.Second, "kept while a client is connected", func() error {
		if got := getInstance(t, ns, "quiet"); got.Spec.Suspend {
			return fmt.Errorf("suspended with a client connected (last active %v)", got.Status.LastActiveAt)
		}
		return nil
	})
	if got := getInstance(t, ns, "quiet"); got.Status.LastActiveAt == nil || !got.Status.LastActiveAt.After(opened) {
		t.Fatalf("lastActiveAt %v: the session opened at %s was not seen", got.Status.LastActiveAt, opened)
	}

	// Once it is gone, the instance is suspended after spec.idle.after, its data kept.
	conn.Close()
	client1.Close()
	eventually(t, 30*time.Second, "suspended when idle", func() error {
		got := getInstance(t, ns, "quiet")
		if !got.Spec.Suspend {
			return fmt.Errorf("not suspended; last active %v", got.Status.LastActiveAt)
		}
		return conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonSuspended)
	})
	waitForEvent(t, ns, "quiet", EventIdle)
	sts := &appsv1.StatefulSet{}
	if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "quiet"}, sts); err != nil || *sts.Spec.Replicas != 0 {
		t.Fatalf("the server of a suspended instance still runs: %v", err)
	}
}

// waitNotReadySaying waits until the instance is not Ready for reason, with a message naming each
// of wantIn.
func waitNotReadySaying(t *testing.T, ns, name, reason string, wantIn ...string) {
	t.Helper()
	eventually(t, 20*time.Second, name+" not Ready: "+reason, func() error {
		got := getInstance(t, ns, name)
		if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, reason); err != nil {
			return err
		}
		msg := metaCondition(got.Status.Conditions, myaasv1.ConditionReady).Message
		for _, w := range wantIn {
			if !strings.Contains(msg, w) {
				return fmt.Errorf("message %q does not name %q", msg, w)
			}
		}
		return nil
	})
}

// Secrets and Services of an instance's names that are somebody else's are never adopted, although the
// manager's cache, which holds only the operator's own objects, never shows them.
func TestForeignObjectsOfTheInstancesNamesAreNeverAdopted(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "shop")
	importRevision(t, ns, "shop", 1)
	for _, name := range []string{"mine-credentials", "theirs-admin", "other-tls"} {
		if err := k8s.Create(bg, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			StringData: map[string]string{"password": "not-yours"}}); err != nil {
			t.Fatal(err)
		}
	}
	newInstance(t, ns, "mine", "shop")
	newInstance(t, ns, "theirs", "shop")
	newInstance(t, ns, "other", "shop")
	waitNotReadySaying(t, ns, "mine", myaasv1.ReasonSecretNotOwned, "mine-credentials")
	waitNotReadySaying(t, ns, "theirs", myaasv1.ReasonSecretNotOwned, "theirs-admin")
	waitNotReadySaying(t, ns, "other", myaasv1.ReasonSecretNotOwned, "other-tls")
	// A Service of the name is not applied over either.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": "web"}}}
	if err := k8s.Create(bg, svc); err != nil {
		t.Fatal(err)
	}
	newInstance(t, ns, "taken", "shop")
	waitNotReadySaying(t, ns, "taken", myaasv1.ReasonWaitingForPreviousInstance, "Service taken")
	if err := k8s.Get(bg, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.OwnerReferences) != 0 || svc.Spec.Selector["app"] != "web" || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("a foreign Service was taken over: owners %v, spec %+v", svc.OwnerReferences, svc.Spec)
	}
	for _, name := range []string{"mine-credentials", "theirs-admin", "other-tls"} {
		s := &corev1.Secret{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			t.Fatal(err)
		}
		if len(s.Data) != 1 || string(s.Data["password"]) != "not-yours" || len(s.OwnerReferences) != 0 {
			t.Errorf("Secret %s was changed: %v, owners %v", name, s.Data, s.OwnerReferences)
		}
	}
}

// The API takes every engine's privileges and user names; the template's engine decides which
// an instance may have, before anything is cloned.
func TestInstanceUserIsCheckedAgainstTheTemplatesEngine(t *testing.T) {
	requireEnv(t)
	startManager(t, Options{})
	ns := newNamespace(t)
	newTemplate(t, ns, "pg", func(d *myaasv1.DatabaseTemplate) { d.Spec.Engine.Type = myaasv1.EnginePostgreSQL })
	importRevision(t, ns, "pg", 1)
	newTemplate(t, ns, "maria")
	importRevision(t, ns, "maria", 1)
	for _, tc := range []struct {
		name, template string
		mutate         func(*myaasv1.DatabaseInstance)
		want           string
	}{
		{"pg-process", "pg", func(i *myaasv1.DatabaseInstance) { i.Spec.ExtraPrivileges = []myaasv1.Privilege{"CREATEDB", "PROCESS"} }, `extraPrivileges[1] "PROCESS"`},
		{"pg-postgres", "pg", func(i *myaasv1.DatabaseInstance) { i.Spec.Username = "postgres" }, `username "postgres" is kept`},
		{"maria-createdb", "maria", func(i *myaasv1.DatabaseInstance) { i.Spec.ExtraPrivileges = []myaasv1.Privilege{"CREATEDB"} }, `extraPrivileges[0] "CREATEDB"`},
	} {
		newInstance(t, ns, tc.name, tc.template, tc.mutate)
		eventually(t, 20*time.Second, tc.name+" refused", func() error {
			got := getInstance(t, ns, tc.name)
			if err := conditionIs(got.Status.Conditions, got.Generation, myaasv1.ConditionReady, metav1.ConditionFalse, myaasv1.ReasonUserNotSupported); err != nil {
				return err
			}
			if msg := metaCondition(got.Status.Conditions, myaasv1.ConditionReady).Message; !strings.Contains(msg, tc.want) {
				return fmt.Errorf("message %q, want it to contain %q", msg, tc.want)
			}
			return nil
		})
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: tc.name}, &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s: a StatefulSet for a refused instance: %v", tc.name, err)
		}
	}
	newInstance(t, ns, "pg-createdb", "pg", func(i *myaasv1.DatabaseInstance) { i.Spec.ExtraPrivileges = []myaasv1.Privilege{"CREATEDB"} })
	eventually(t, 20*time.Second, "a PostgreSQL clone with CREATEDB", func() error {
		sts := &appsv1.StatefulSet{}
		if err := k8s.Get(bg, client.ObjectKey{Namespace: ns, Name: "pg-createdb"}, sts); err != nil {
			return err
		}
		args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
		if !strings.Contains(args, "--engine=postgresql") || !strings.Contains(args, "--extra-privilege=CREATEDB") || !strings.Contains(args, "--port=5432") {
			return fmt.Errorf("args %s", args)
		}
		return nil
	})
}
