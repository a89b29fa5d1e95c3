"""The tune's decisions, pure: the noise pruner (its rungs, the seed noise, a loss metric), the confirm rule
(separated, tied, a loss metric, a resumed round), and the replay of the whole tuner on a small hand-made table
whose answer is known (virtual clock, pruning, the budget)."""
from __future__ import annotations

import math

import pytest

from caffegen.sweep.pruning import Rival, prune_at, rungs
from caffegen.tune.decide import SearchOutcome, candidates, choose, confirm_round

# -- the noise pruner ----------------------------------------------------------------------------------------------


def test_first_rung_is_never_the_first_test_pass():
    # a search run of 300 iterations with 6 test passes: eta^2 = 9 would put the first rung at 34 -> the first pass
    assert rungs(300, 50, None, 3)[0] == 100
    assert rungs(600, 50, None, 3) == [100, 250]     # 67 -> 100, 201 -> 250
    assert rungs(300, 50, 50, 3)[0] == 50           # asked for explicitly: the user's min_resource stands


def _field(values: list[float], decay: float = 0.0) -> list[Rival]:
    return [Rival(v, decay) for v in values]


def test_seed_noise_keeps_a_run_the_val_set_alone_would_cut():
    others = _field([0.62, 0.60, 0.58, 0.61])
    me = Rival(0.53, 0.0)
    cut, why = prune_at(me, others, eta=3, maximize=True, test_images=1000)
    assert cut, why                                   # 0.08 behind: beyond the binomial noise of 1,000 images
    cut, why = prune_at(me, others, eta=3, maximize=True, test_images=1000, seed_sd=0.05)
    assert not cut and "within noise" in why          # ... not beyond the seed-to-seed spread of 0.05


def test_a_loss_is_pruned_when_it_is_higher():
    others = _field([0.9, 1.0, 1.1])
    cut, _ = prune_at(Rival(2.5, 0.0), others, eta=3, maximize=False, test_images=400, seed_sd=0.1)
    assert cut
    cut, _ = prune_at(Rival(0.5, 0.0), others, eta=3, maximize=False, test_images=400, seed_sd=0.1)
    assert not cut


def test_fewer_than_eta_comparable_runs_decide_nothing():
    cut, why = prune_at(Rival(0.1, 0.0), _field([0.9]), eta=3, maximize=True, test_images=400)
    assert not cut and "fewer than 3" in why
    # runs that already decayed are not comparable with one that has two decades ahead
    cut, why = prune_at(Rival(0.1, 2.0), _field([0.9, 0.9, 0.9], decay=0.0), eta=3, maximize=True, test_images=400)
    assert not cut and "fewer than 3" in why


def test_the_search_table_passes_the_seed_noise_to_the_pruner():
    import optuna

    from caffegen.errors import InputError
    from caffegen.sweep.search import parse_search
    from caffegen.sweep.strategies import RunShape, make_pruner

    fields = {"base_lr": "float", "lr_policy": "str"}
    space = {"base_lr": {"low": 1e-3, "high": 0.1, "log": True}}
    spec = parse_search({"sampler": "tpe", "trials": 9, "pruner": "noise", "seed_sd": 0.05, "space": space}, fields,
                        "spec.toml")
    assert spec.seed_sd == 0.05
    shape = RunShape(max_iter=300, test_interval=50, test_images=1000)

    def study_with(pruner):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for v in (0.62, 0.60, 0.61):
            t = study.ask()
            t.report(v, 100)
            study.tell(t, v)
        return study

    for sd, expect in ((0.05, False), (None, True)):
        s = parse_search({**{"sampler": "tpe", "trials": 9, "pruner": "noise", "space": space},
                          **({"seed_sd": sd} if sd else {})}, fields, "spec.toml")
        study = study_with(make_pruner(s, 50, True, shape))
        t = study.ask()
        t.report(0.53, 100)
        assert t.should_prune() is expect
    with pytest.raises(InputError, match="seed_sd goes with pruner"):
        parse_search({"sampler": "tpe", "trials": 9, "pruner": "asha", "seed_sd": 0.05, "space": space}, fields, "s")


# -- the confirm rule ----------------------------------------------------------------------------------------------


def test_confirm_separates_a_clear_winner():
    values = {"a": {1: 0.80, 2: 0.81, 3: 0.80}, "b": {1: 0.60, 2: 0.62, 3: 0.61}, "c": {1: 0.55, 2: 0.57, 3: 0.56}}
    alive, method = confirm_round(values, ["a", "b", "c"], maximize=True)
    assert alive == ["a"] and "fresh seeds 1, 2, 3" in method
    assert choose(values, alive, maximize=True).winner == "a"


def test_confirm_keeps_candidates_it_cannot_separate():
    values = {"a": {1: 0.70, 2: 0.64}, "b": {1: 0.66, 2: 0.69}, "c": {1: 0.69, 2: 0.62}}
    alive, _ = confirm_round(values, ["a", "b", "c"], maximize=True)
    assert alive == ["a", "b", "c"]
    v = choose(values, alive, maximize=True)
    assert v.winner == "b" and set(v.tied) == {"a", "c"} and v.seeds == 2


def test_confirm_ranks_a_loss_lowest_first():
    values = {"a": {1: 0.30, 2: 0.31, 3: 0.30}, "b": {1: 0.90, 2: 0.92, 3: 0.91}}
    alive, _ = confirm_round(values, ["a", "b"], maximize=False)
    assert alive == ["a"]
    assert choose({"a": {1: 0.5}, "b": {1: 0.4}}, ["a", "b"], maximize=False).winner == "b"


def test_one_round_decides_nothing_and_a_resumed_round_decides_the_same():
    values = {"a": {1: 0.8}, "b": {1: 0.6}}
    assert confirm_round(values, ["a", "b"], maximize=True)[0] == ["a", "b"]     # no repeats: no noise estimate
    two = {"a": {1: 0.80, 2: 0.81, 3: 0.80}, "b": {1: 0.60, 2: 0.62, 3: 0.61}}
    resumed = {n: dict(sorted(v.items(), reverse=True)) for n, v in two.items()}   # read back in another order
    assert confirm_round(two, ["a", "b"], maximize=True) == confirm_round(resumed, ["a", "b"], maximize=True)


def test_candidates_leave_out_pruned_and_valueless_trials_and_repeats():
    trials = [SearchOutcome("lr0.01_step", {}, 0.7), SearchOutcome("lr0.1_step", {}, 0.9, pruned=True),
              SearchOutcome("lr0.001_poly", {}, None), SearchOutcome("lr0.01_step", {}, 0.75),
              SearchOutcome("lr0.01_poly", {}, 0.72), SearchOutcome("lr0.01_inv", {}, float("nan"))]
    got = candidates(trials, maximize=True, k=3)
    assert [(t.name, t.value) for t in got] == [("lr0.01_step", 0.75), ("lr0.01_poly", 0.72)]


# -- the replay on a hand-made table -------------------------------------------------------------------------------


HAND = {(0.001, "step"): 0.40, (0.001, "poly"): 0.45, (0.01, "step"): 0.70, (0.01, "poly"): 0.80,
        (0.1, "step"): 0.1, (0.1, "poly"): 0.1}


def _table(noise: float = 0.0, final: dict | None = None, suggested: float = 0.01, blew_up_at: float | None = 0.5,
           short: dict | None = None):
    """3 base_lr x 2 schedules x 3 seeds at 90 and 30 iterations (``final``: another truth, the same way; ``short``:
    another at 30 iterations). The truth: 0.01 poly is best (0.80); 0.1 diverges early (chance); 0.001 learns
    slowly. Each run costs 10 s per test pass after a 5-s start. The range test suggests ``suggested``."""
    from caffegen.tune.table import Curve, CurveTable

    final = final or HAND
    curves = []
    for iters, passes in ((90, 12), (30, 6)):
        steps = [round(i * iters / passes) for i in range(passes + 1)]
        for (lr, policy), top in (final if iters == 90 or short is None else short).items():
            for seed in range(3):
                jitter = noise * (seed - 1)
                values = [0.1 + (top + jitter - 0.1) * math.sqrt(s / iters) for s in steps]
                if top <= 0.1:       # diverged
                    values = [0.1] + [float("nan")] * passes
                times = [5 + 10 * i for i in range(passes + 1)]
                curves.append(Curve(lr, policy, seed, iters, tuple(steps), tuple(values), tuple([1.0] * len(steps)),
                                    tuple(float(t) for t in times), times[-1] + 1.0))
    meta = {"caffegen": "test", "speed": {"iter_s": 0.5, "test_s": 5.0, "start_s": 5.0, "check_s": 0.5,
                                          "figure_s": 0.1, "wall_s": 30.0}}
    problem = {"name": "hand", "classes": 10, "val_images": 1000, "train_images": 1000, "iters": 90,
               "search_iters": 30, "maximize": True}
    lrfind = [{"seed": s, "suggested": suggested, "blew_up_at": blew_up_at, "suggestions": {}, "wall_s": 20.0}
              for s in range(3)]
    return CurveTable(problem, meta, curves, lrfind)


def test_the_table_knows_its_truth_and_the_nearest_rate():
    t = _table(noise=0.02)
    assert t.best_config() == ((0.01, "poly"), pytest.approx(0.80))
    assert t.nearest_lr(0.004) == 0.01 and t.nearest_lr(0.002) == 0.001
    assert t.truth(0.1, "step") == pytest.approx(0.1)          # diverged: chance
    assert t.seed_sd() == pytest.approx(0.0, abs=1e-9)         # the jitter is the same for every config: a block
    assert t.compute_of() == pytest.approx(6 * 3 * 126.0)


def test_the_replayed_tune_finds_the_known_best_within_its_budget():
    from caffegen.tune.replay import Method, replay, speed_of

    t = _table()
    out = replay(t, Method("tune", chains=False, scan=False, budget="12runs"), 0)
    assert out.chosen == (0.01, "poly") and out.regret == pytest.approx(0.0)
    assert out.trials >= 6
    # the budget: 12 full-length runs' worth of wall on 2 slots, as the live plan reads --budget 12runs (+-10%)
    full = speed_of(t, 2).run_s(90, 7)
    assert out.wall_s <= 1.1 * 12 * full / 2
    # the candidates trained again at the full length: the winner's run there is the final one (no retrain)
    assert out.stages["search"] > 0 and out.stages["confirm"] >= 2 * 126.0 and "final" not in out.stages
    short = replay(t, Method("tune", chains=False, scan=False, budget="12runs", confirm_full=False), 0)
    assert short.chosen == (0.01, "poly") and short.stages["final"] >= 126.0     # confirmed short, then retrained
    # the same seed replays the same tune; another seed may differ in its trials, not in its answer here
    again = replay(t, Method("tune", chains=False, scan=False, budget="12runs"), 0)
    assert (again.chosen, again.compute_s, again.trials) == (out.chosen, out.compute_s, out.trials)


def test_the_search_range_follows_its_best_trials_past_the_range_tests_guess():
    from caffegen.tune.replay import Method, replay

    # the higher the rate the better, up to 0.1; the range test's valley (0.001) gives the range 1e-4 .. 0.01
    rates, policies = (1e-4, 3.16e-4, 0.001, 0.00316, 0.01, 0.0316, 0.1), ("step", "poly", "exp", "inv")
    rising = {(lr, p): 0.30 + 0.08 * i + 0.01 * j for i, lr in enumerate(rates) for j, p in enumerate(policies)}
    t = _table(final=rising, suggested=0.001, blew_up_at=None)
    fixed = [replay(t, Method("tune", chains=False, scan=False, budget="20runs", follow=False), s) for s in range(4)]
    followed = [replay(t, Method("tune", chains=False, scan=False, budget="20runs"), s) for s in range(4)]
    assert all(o.chosen[0] <= 0.01 and o.regret > 0.1 for o in fixed)      # a range's top is as far as it goes
    assert all(o.chosen[0] >= 0.0316 for o in followed)                     # the trials took it up
    assert sum(o.regret for o in followed) < sum(o.regret for o in fixed) / 3


def test_a_range_moves_half_a_decade_when_its_best_trials_crowd_an_end():
    from caffegen.sweep.ranges import STEP, followed

    within = (1e-5, 0.1)
    # the best three within half a decade of the top: one step up, and no further on the same evidence
    assert followed(1e-4, 0.01, within, [0.005, 0.008, 0.009, 5e-4], [0.009, 0.008, 0.005]) == \
        pytest.approx((1e-4, 0.01 * STEP))
    assert followed(1e-4, 0.01, within, [0.005, 0.008, 5e-4], [0.008, 5e-4, 0.005]) == (1e-4, 0.01)   # split: stays
    assert followed(1e-4, 0.01, within, [1e-4, 1.2e-4, 2e-4], [1e-4, 1.2e-4, 2e-4]) == pytest.approx((1e-4 / STEP, 0.01))
    assert followed(1e-4, 0.01, within, [0.009, 0.009], [0.009, 0.009]) == (1e-4, 0.01)     # two trials: noise
    # it always covers what was sampled (a resumed driver sees the range the trials came from), never past within
    assert followed(1e-4, 0.01, within, [0.05], []) == pytest.approx((1e-4, 0.1))
    assert followed(1e-4, 0.01, within, [0.09, 0.095, 0.099], [0.099, 0.095, 0.09]) == pytest.approx((1e-4, 0.1))


def test_a_sweeps_study_asks_from_the_range_its_trials_moved(tmp_path):
    import optuna

    from caffegen.errors import InputError
    from caffegen.sweep.search import Study, parse_search

    fields = {"base_lr": "float", "lr_policy": "str"}
    space = {"base_lr": {"low": 1e-4, "high": 0.01, "log": True, "within": [1e-5, 0.1]}, "lr_policy": ["poly"]}
    spec = parse_search({"sampler": "random", "trials": 9, "space": space}, fields, "spec.toml")
    study = Study(spec, tmp_path, "s", maximize=True, min_resource=1)
    assert study.distributions()["base_lr"].high == pytest.approx(0.01)
    for lr, v in ((0.006, 0.7), (0.008, 0.72), (0.009, 0.71), (0.0002, 0.3)):
        study.study.add_trial(optuna.trial.create_trial(
            params={"base_lr": lr, "lr_policy": "poly"}, value=v, distributions=study.distributions()))
    assert study.distributions()["base_lr"].high == pytest.approx(0.0316, rel=1e-3)
    number, name, params = study.ask(lambda n, p: f"t{n}")
    assert 1e-4 <= params["base_lr"] <= 0.0317
    for bad, why in (({"low": 1e-4, "high": 0.01, "within": [1e-5, 0.1]}, "log-scaled"),
                     ({"low": 1e-4, "high": 0.01, "log": True, "within": [1e-3, 0.1]}, "must hold the range"),
                     ({"low": 1e-4, "high": 0.01, "log": True, "within": 0.1}, "two numbers")):
        with pytest.raises(InputError, match=why):
            parse_search({"sampler": "random", "trials": 9, "space": {"base_lr": bad}}, fields, "spec.toml")


def test_a_replayed_search_stops_at_its_compute_budget_and_prunes_on_the_clock():
    from caffegen.tune.replay import Method, replay

    t = _table()
    budget = 800.0
    out = replay(t, Method("asha", kind="search", sampler="random", pruner="asha", chains=False, compute=budget), 3)
    run = 126.0
    # no trial is asked once the budget is spent; the ones running then finish: at most a slot's run over
    assert budget <= out.compute_s <= budget + 2 * run
    assert out.pruned > 0                           # diverged and slow runs cut at a rung
    assert out.chosen in t.configs() and out.regret >= 0
    none = replay(t, Method("random", kind="search", sampler="random", pruner="none", chains=False, compute=budget), 3)
    assert none.pruned == 0 and none.trials < out.trials   # pruning buys more trials for the same compute


def test_when_the_repeated_grid_fits_the_budget_the_replay_runs_it():
    from caffegen.tune.replay import Method, replay

    t = _table(noise=0.02)
    out = replay(t, Method("tune", chains=False, scan=False, budget="400runs"), 1)
    # lr-find's range (0.001 .. 0.1): 5 rates a half-decade apart x 2 schedules x 3 seeds, each trained and paid for
    # (the table reads 0.00316 as 0.001 or 0.01, its nearest)
    assert out.trials == 5 * 2 * 3 and "confirm" not in out.stages
    assert out.stages["search"] >= 30 * 126.0
    assert out.chosen == (0.01, "poly") and out.regret == pytest.approx(0.0)


def test_a_confirm_at_the_full_length_needs_no_final_run():
    from caffegen.tune.budget import Speed, make_plan, parse_budget

    speed = Speed(iter_s=0.05, test_s=0.5, start_s=0.4, slots=2, check_s=1.0, figure_s=0.3)
    kw = dict(iters=600, search_iters=200, test_interval=50, search_test_interval=33, policies=7, sanity_iters=300,
              lrfind_iters=100, final="retrain")
    short = make_plan(parse_budget("15runs"), speed, confirm_full=False, scan=False, **kw)
    full = make_plan(parse_budget("15runs"), speed, confirm_full=True, scan=False, **kw)
    assert make_plan(parse_budget("15runs"), speed, scan=False, **kw).confirm_full     # the search design
    assert "final" in [s.name for s in short.stages] and "final" not in [s.name for s in full.stages]
    confirm = {s.name: s for s in full.stages}["confirm"]
    assert "at the full length (600 iterations" in confirm.what
    assert confirm.seconds > {s.name: s for s in short.stages}["confirm"].seconds     # longer runs
    assert full.to_json()["confirm_full"] is True and short.to_json()["confirm_full"] is False


def test_distinct_candidates_count_near_rates_of_one_schedule_once():
    trials = [SearchOutcome("lr0.0066_poly", {"base_lr": 0.0066, "lr_policy": "poly"}, 0.90),
              SearchOutcome("lr0.0073_poly", {"base_lr": 0.0073, "lr_policy": "poly"}, 0.89),
              SearchOutcome("lr0.0029_inv", {"base_lr": 0.0029, "lr_policy": "inv"}, 0.88),
              SearchOutcome("lr0.0021_poly", {"base_lr": 0.0021, "lr_policy": "poly"}, 0.87)]
    assert [t.name for t in candidates(trials, maximize=True, k=2)] == ["lr0.0066_poly", "lr0.0073_poly"]
    got = candidates(trials, maximize=True, k=3, distinct=True)
    assert [t.name for t in got] == ["lr0.0066_poly", "lr0.0029_inv", "lr0.0021_poly"]   # 0.0021: another half-decade


def test_the_short_horizon_candidates_take_the_last_places_unless_already_there():
    from caffegen.tune.decide import longer_horizon

    trials = [SearchOutcome("lr0.003_poly", {"base_lr": 0.003, "lr_policy": "poly"}, 0.90),
              SearchOutcome("lr0.002_inv", {"base_lr": 0.002, "lr_policy": "inv"}, 0.89),
              SearchOutcome("lr0.03_poly", {"base_lr": 0.03, "lr_policy": "poly"}, 0.88),
              SearchOutcome("lr0.001_step", {"base_lr": 0.001, "lr_policy": "step"}, 0.87)]
    assert longer_horizon(trials, k=3, factors=()) == trials[:3]
    got = longer_horizon(trials, k=4, factors=(10 ** 0.5,))
    assert [t.name for t in got] == ["lr0.003_poly", "lr0.002_inv", "lr0.03_poly", "lr0.00949_poly"]
    assert got[-1].value is None and got[-1].runs == ()          # a configuration no trial ran: fresh seeds only
    # 10x the best is lr0.03_poly's half-decade: already a candidate, nothing replaced
    assert longer_horizon(trials, k=4, factors=(10.0,)) == trials[:4]


def test_the_ladder_climbs_from_the_leader_and_skips_what_was_tried():
    from caffegen.tune.decide import ladder

    lead = SearchOutcome("lr0.003_poly", {"base_lr": 0.003, "lr_policy": "poly"}, 0.90)
    tried = [lead, SearchOutcome("lr0.03_poly", {"base_lr": 0.03, "lr_policy": "poly"}, 0.88)]
    got = ladder([lead], tried, (10 ** 0.5, 10.0))
    assert [t.name for t in got] == ["lr0.00949_poly"]          # 10x is lr0.03_poly's half-decade: already tried
    assert got[0].value is None and got[0].point == {"base_lr": 0.00949, "lr_policy": "poly"}
    assert ladder([lead], [lead], ()) == []
    assert [t.name for t in ladder([lead], [lead], (10 ** 0.5, 10.0), ceiling=0.01)] == ["lr0.00949_poly"]   # no higher


def _short_horizon_table():
    """A third of the run prefers 0.001 (the short-horizon bias); the full run's best is 10x higher, at 0.01 (poly
    0.02 above step everywhere); the range test's valley at 0.003."""
    rates = (0.001, 0.00316, 0.01, 0.0316, 0.1)
    short = {(lr, p): v + 0.02 * (p == "poly") for lr, v in zip(rates, (0.60, 0.55, 0.45, 0.30, 0.1))
             for p in ("step", "poly")}
    full = {(lr, p): v + 0.02 * (p == "poly") for lr, v in zip(rates, (0.55, 0.70, 0.78, 0.60, 0.1))
            for p in ("step", "poly")}
    return _table(final=full, short=short, suggested=0.003, blew_up_at=None)


def test_the_ladder_finds_the_rate_a_short_search_ranks_too_low():
    from caffegen.tune.replay import Method, replay, speed_of

    t = _short_horizon_table()
    without = [replay(t, Method("tune", chains=False, scan=False, budget="15runs"), s) for s in range(3)]
    laddered = [replay(t, Method("tune", chains=False, scan=False, budget="15runs", ladder=(10 ** 0.5, 10.0)), s)
                for s in range(3)]
    assert all(o.chosen[0] <= 0.00316 and o.regret > 0.05 for o in without)    # the search's rates, confirmed
    assert all(o.chosen == (0.01, "poly") for o in laddered)
    # the ladder's runs are paid for in the confirm stage, and the plan kept room for them: the budget holds
    assert all(o.stages["confirm"] > w.stages["confirm"] for o, w in zip(laddered, without))
    assert max(o.wall_s for o in laddered) <= 1.1 * 15 * speed_of(t, 2).run_s(90, 7) / 2


def test_the_plan_keeps_room_for_the_ladder():
    from caffegen.tune.budget import Speed, make_plan, parse_budget

    speed = Speed(iter_s=0.05, test_s=0.5, start_s=0.4, slots=2, check_s=1.0, figure_s=0.3)
    kw = dict(iters=600, search_iters=200, test_interval=50, search_test_interval=33, policies=7, sanity_iters=300,
              lrfind_iters=100, final="retrain")
    on, off = (make_plan(parse_budget("15runs"), speed, ladder=2, scan=False, **kw),
               make_plan(parse_budget("15runs"), speed, scan=False, **kw))
    assert "then 2 runs of the leader at higher rates" in on.stages[-2].what and "higher" not in off.stages[-2].what
    assert on.search_seconds < off.search_seconds and abs(on.compute_runs - off.compute_runs) < 1.0   # the search paid


def test_each_stage_decision_round_trips_through_tune_json_and_a_newer_format_is_refused(tmp_path):
    import json

    from caffegen.errors import InputError
    from caffegen.tune.decisions import DECISIONS, Confirmed, LrRange, decision_of
    from caffegen.tune.state import FORMAT, TuneState

    assert set(DECISIONS) == {"measure", "sanity", "lr-find", "search", "confirm", "final", "look"}
    lr = LrRange(0.001, 0.1, "valley 0.01", {"valley": 0.01}, None)
    verdict = Confirmed({"name": "lr0.01_poly", "mean": 0.8, "seeds": 1}, "winner lr0.01_poly", [], "one seed",
                        {"lr0.01_poly": {1: 0.8}})
    state = TuneState.open(tmp_path, {"data": "x"})
    state.stage("lr-find")["decision"] = lr.to_json()
    state.stage("confirm")["decision"] = verdict.to_json()
    state.save()
    raw = json.loads((tmp_path / "tune.json").read_text())
    assert raw["format"] == FORMAT
    again = TuneState.open(tmp_path, {"data": "x"})
    assert decision_of("lr-find", again.stages["lr-find"]["decision"]) == lr
    back = decision_of("confirm", again.stages["confirm"]["decision"])
    assert back.winner == verdict.winner and back.describe() == "winner lr0.01_poly"
    assert decision_of("search", None) is None
    (tmp_path / "tune.json").write_text(json.dumps({**raw, "format": FORMAT + 1}))
    with pytest.raises(InputError, match="written by a newer caffegen"):
        TuneState.open(tmp_path, {"data": "x"})


def test_a_tune_folder_made_before_the_size_flags_resumes(tmp_path):
    """The identity a rerun must match leaves unset new options out, as a tune.json of format 1 has it; --spec
    counts by its content (an edited file is another tune)."""
    from caffegen.tune import TuneOptions

    plain = TuneOptions(data="images").identity()
    assert not {"resize", "crop", "batch", "spec", "spec_sha256"} & set(plain)
    spec = tmp_path / "s.toml"
    spec.write_text("[solver]\nweight_decay = 0.001\n")
    first = TuneOptions(data="images", spec=str(spec), crop=64).identity()
    spec.write_text("[solver]\nweight_decay = 0.0001\n")
    assert first["crop"] == 64 and first != TuneOptions(data="images", spec=str(spec), crop=64).identity()


# -- the rate scan (the plan's scan mode) --------------------------------------------------------------------------


def test_the_scan_goes_up_from_the_valley_in_half_decades_and_stays_below_a_blow_up():
    from caffegen.tune.decide import scan_rates

    assert scan_rates(0.001) == [0.001, 0.00316, 0.01, 0.0316]
    assert scan_rates(None) == scan_rates(0.001)                           # no suggestion: up from 0.001
    assert scan_rates(0.001, blew_up_at=0.02) == [0.001, 0.00316]          # a third of 0.02: 0.0067
    assert scan_rates(0.001, blew_up_at=0.002) == [0.000667]               # never above it, one rate at least


def test_the_scan_trains_poly_and_cosine_and_orders_the_rest():
    from caffegen.tune.decide import scan_candidates, scan_schedules
    from caffegen.tune.specs import TUNE_SCHEDULES

    scanned, others = scan_schedules(TUNE_SCHEDULES)
    assert scanned == ["poly", "cosine"]
    assert others == ["linear", "onecycle", "sigmoid", "step", "multistep", "inv", "exp", "fixed"]
    assert scan_schedules(("exp", "step", "warmup_poly")) == (["step", "exp"], ["warmup_poly"])   # no poly, cosine
    got = scan_candidates(0.0316, TUNE_SCHEDULES, 4)
    assert [n for n, _ in got] == ["lr0.0316_poly", "lr0.0316_cosine", "lr0.0316_linear", "lr0.0316_onecycle"]
    assert got[2][1] == {"base_lr": 0.0316, "lr_policy": "linear"}


def test_the_scan_chooses_the_rate_both_schedules_like_a_failed_run_counting_as_the_worst():
    from caffegen.tune.decide import scan_best, scan_rate

    runs = {(0.001, "poly"): 0.50, (0.001, "cosine"): 0.52, (0.0316, "poly"): 0.62, (0.0316, "cosine"): 0.48,
            (0.01, "poly"): 0.56, (0.01, "cosine"): 0.57}
    assert scan_rate(runs, maximize=True) == 0.01             # pooled 0.565 beats 0.55: one high run is not a rate
    assert scan_rate({**runs, (0.01, "cosine"): None}, maximize=True) == 0.0316       # diverged: the worst
    every = {k: (None if k[1] == "cosine" else v) for k, v in runs.items()}           # a failed run at every rate
    assert scan_rate(every, maximize=True) == 0.0316                                  # the best single run then
    losses = {(0.001, "poly"): 1.2, (0.001, "cosine"): 1.0, (0.01, "poly"): 0.9, (0.01, "cosine"): 1.3}
    assert scan_rate(losses, maximize=False) == 0.001         # a loss: lowest pooled; equal: the lower rate
    assert scan_rate({**losses, (0.01, "cosine"): 1.1}, maximize=False) == 0.01
    assert scan_best(runs, 0.01, maximize=True) == (0.01, "cosine")
    with pytest.raises(ValueError):
        scan_rate({}, maximize=True)


def test_the_replayed_scan_finds_the_rate_a_short_search_ranks_too_low():
    from caffegen.tune.replay import Method, replay, speed_of

    t = _short_horizon_table()
    scanned = [replay(t, Method("tune", chains=False, budget="15runs"), s) for s in range(3)]
    searched = [replay(t, Method("tune", chains=False, scan=False, budget="15runs"), s) for s in range(3)]
    assert all(o.regret > 0.05 for o in searched)
    assert all(o.chosen == (0.01, "poly") and o.regret == pytest.approx(0.0) for o in scanned)
    # 4 rates x 2 schedules, then both schedules again at the rate with a fresh seed: no final run, within budget
    run = 126.0
    assert all(o.trials == 10 and o.stages["search"] >= 8 * run and o.stages["confirm"] >= 2 * run
               and "final" not in o.stages for o in scanned)
    assert max(o.wall_s for o in scanned) <= 1.1 * 15 * speed_of(t, 2).run_s(90, 7) / 2


def test_the_plan_scans_where_the_budget_fits_it_and_searches_where_it_does_not():
    from caffegen.tune.budget import SCAN_AT_RATE_MIN, Speed, make_plan, parse_budget

    speed = Speed(iter_s=0.05, test_s=0.5, start_s=0.4, slots=2, check_s=1.0, figure_s=0.3)
    kw = dict(iters=600, search_iters=200, test_interval=50, search_test_interval=33, policies=10, sanity_iters=300,
              lrfind_iters=100, final="retrain")
    plan = make_plan(parse_budget("10%"), speed, **kw)
    assert plan.mode == "scan" and plan.confirm_full and SCAN_AT_RATE_MIN <= plan.at_rate <= 10
    stages = {s.name: s for s in plan.stages}
    assert "4 base_lr a half-decade apart up from the range test's valley x poly and cosine" in stages["search"].what
    assert "final" not in stages
    assert stages["search"].runs == pytest.approx(8, abs=0.1) and plan.of_grid <= 0.10
    assert make_plan(parse_budget("10%"), speed, scan=False, **kw).mode == "search"
    small = make_plan(parse_budget("8runs"), speed, **kw)          # no room for 8 + 4 full-length runs
    assert small.mode == "search"
    bigger = make_plan(parse_budget("20runs"), speed, **kw)
    assert bigger.mode == "scan" and bigger.at_rate > plan.at_rate and bigger.to_json()["at_rate"] == bigger.at_rate
