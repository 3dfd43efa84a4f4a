from zk_pipelines_tests.pipeline_harness import PipelineHarness, materialization_metadata, step_errors


def test_explore(sandboxes, tmp_path):
    kaseya, zomentum = sandboxes
    kaseya.state.reset(seed=7, scale="small_recent")
    zomentum.state.reset(seed=7, scale="small_recent")
    h = PipelineHarness(kaseya, zomentum, tmp_path)
    r = h.backfill()
    assert r.success, step_errors(r)
    job = h.definitions.resolve_job_def("reconcile_job")
    res = job.execute_in_process(instance=h.instance, raise_on_error=False)
    assert res.success, step_errors(res)
    md = materialization_metadata(res, "audit/reconciliation")
    print(md["counts"])
    print([ (row.data["entity"], row.data["class"], row.data["detail"]) for row in md["differences"].records][:20])
    assert 0
