"""How tight is each estimate of log p(x)? ELBO, importance sampling and AIS against the truth.

A linear-Gaussian VAE is probabilistic PCA, whose log p(x) is known in closed form. This
script gives it PPCA weights and a deliberately imperfect guide (the exact posterior with
doubled scales and shifted means, as a trained encoder would be), then estimates log p(x)
of held-out points with the ELBO, the importance-sampled IWAE bound for growing K (the
Burda et al. protocol goes to K = 5000) and AIS — and reports each estimate's gap to the
exact value, its standard error and the effective sample size, in nats and bits/dim.
With ``--run RUN_DIR`` it also evaluates a trained run (as ``ppl-vae evaluate`` does).
The report lands in OUT_DIR/evaluate_likelihood.html.

    python examples/evaluate_likelihood.py --backend numpyro
    python examples/evaluate_likelihood.py --smoke        # seconds: tiny, no AIS
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("pyro", "numpyro"), default="numpyro")
    parser.add_argument("--data-dim", type=int, default=20)
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--noise-scale", type=float, default=0.3)
    parser.add_argument("--num-points", type=int, default=100, help="held-out datapoints")
    parser.add_argument("--num-samples", type=int, nargs="+",
                        default=[1, 10, 100, 1000, 5000], help="values of K")
    parser.add_argument("--ais-points", type=int, default=None,
                        help="datapoints given an AIS estimate (default 5; 0 with --smoke)")
    parser.add_argument("--ais-steps", type=int, default=1000)
    parser.add_argument("--ais-chains", type=int, default=32)
    parser.add_argument("--run", type=Path, default=None,
                        help="also evaluate this trained run directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/evaluate-example"))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and no AIS unless --ais-points is given (for tests)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from ppl_vae.data import ppca as lg
    from ppl_vae.evaluation import ais_log_likelihood, importance_sample, likelihood_units
    from ppl_vae.models import build, linear_gaussian
    from ppl_vae.reports import Report, machine_description

    if args.smoke:
        args.data_dim, args.latent_dim, args.num_points = 6, 2, 10
        args.num_samples, args.ais_steps, args.ais_chains = [1, 10, 100], 50, 8
    if args.ais_points is None:
        args.ais_points = 0 if args.smoke else 5
    ppca = lg.orthogonal_ppca(args.data_dim, args.latent_dim, args.noise_scale, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x = (rng.normal(size=(args.num_points, args.latent_dim)) @ ppca.W.T + ppca.b
         + ppca.sigma * rng.normal(size=(args.num_points, args.data_dim)))
    exact = lg.exact_log_likelihood(ppca.W, ppca.b, ppca.sigma, x)

    vae = build(linear_gaussian.linear_gaussian_spec(args.data_dim, args.latent_dim), args.backend)
    linear_gaussian.set_ppca_params(vae, ppca.W, ppca.b, ppca.sigma)
    _spoil_guide(vae, lg, scale_factor=2.0, shift=0.2)

    rows = []
    for k in args.num_samples:
        est = importance_sample(vae, x, k, seed=args.seed)
        rows.append({"estimator": f"IWAE, K={k}", "K": k,
                     "gap_nats": np.mean(est.log_likelihood - exact),
                     "stderr": np.sqrt(np.sum(est.stderr**2)) / x.shape[0] if k > 1 else np.nan,
                     "ess": est.ess.mean()})
        print(f"K={k:5d}: mean log p(x) gap {rows[-1]['gap_nats']:+.4f} nats, "
              f"mean ESS {rows[-1]['ess']:.1f}")
    rows.insert(0, {"estimator": "ELBO", "K": args.num_samples[-1],
                    "gap_nats": np.mean(est.elbo - exact),
                    "stderr": np.sqrt(np.sum(est.elbo_stderr**2)) / x.shape[0], "ess": np.nan})
    n_ais = min(args.ais_points, x.shape[0])
    if n_ais > 0:
        ais = ais_log_likelihood(vae, x[:n_ais], num_steps=args.ais_steps,
                                 num_chains=args.ais_chains, seed=args.seed)
        rows.append({"estimator": f"AIS, {args.ais_steps} steps × {args.ais_chains} chains "
                                  f"(first {n_ais} points)", "K": np.nan,
                     "gap_nats": np.mean(ais.log_likelihood - exact[:n_ais]),
                     "stderr": np.sqrt(np.sum(ais.stderr**2)) / n_ais, "ess": ais.ess.mean()})
        print(f"AIS: mean gap {rows[-1]['gap_nats']:+.4f} nats on {n_ais} points")
    table = pd.DataFrame(rows)
    units = likelihood_units("gaussian", args.data_dim)
    table["gap_bits_per_dim"] = -units.bits_per_dim(table["gap_nats"].to_numpy())

    fig, ax = plt.subplots(figsize=(5, 3.2))
    iwae = table[table["estimator"].str.startswith("IWAE")]
    ax.errorbar(iwae["K"], -iwae["gap_nats"], yerr=2 * iwae["stderr"].fillna(0), marker="o")
    ax.axhline(-table.loc[0, "gap_nats"], color="grey", linestyle="--", label="ELBO")
    ax.set(xscale="log", yscale="symlog", xlabel="K (importance samples)",
           ylabel="log p(x) − estimate (nats)", title="Gap to the exact log p(x)")
    ax.legend()

    report = Report("How tight is each estimate of log p(x)?")
    report.text(f"Probabilistic PCA, D = {args.data_dim}, d = {args.latent_dim}, "
                f"σ = {args.noise_scale}; guide: exact posterior with doubled scales and "
                f"means shifted by 0.2 posterior sd; {x.shape[0]} held-out points; backend "
                f"{args.backend}. Exact mean log p(x) = {exact.mean():.4f} nats.")
    report.text(f"Units: {units.note}.")
    report.table(table, caption="Mean estimate minus the exact log p(x) (negative: a lower "
                                "bound's gap); stderr is the Monte Carlo error of that mean.")
    report.figure(fig, "gap-vs-k", "IWAE gap shrinks as K grows; error bars ±2 se")
    if args.run is not None:
        report.heading(f"Trained run {args.run}")
        report.table(_evaluate_run(args.run, args.seed))
    report.text(f"Machine: {machine_description()}.")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    _, html = report.write(args.out_dir, "evaluate_likelihood")
    print(f"report: {html}")
    return html


def _spoil_guide(vae, lg, scale_factor: float, shift: float) -> None:
    """Turn the exact-posterior encoder into an imperfect one: scales × factor, means +shift·sd."""
    import numpy as np

    d = vae.spec.latent_dim
    params = vae.get_params()
    bias = np.array(params["encoder.0.bias"], dtype=np.float64)
    scale = np.logaddexp(0.0, bias[d:]) + vae.spec.scale_floor
    bias[:d] += shift * scale
    bias[d:] = lg.inverse_softplus(scale_factor * scale - vae.spec.scale_floor)
    vae.set_params(params | {"encoder.0.bias": bias})


def _evaluate_run(path: Path, seed: int):
    from ppl_vae.evaluation import EvaluationConfig, evaluate_split, likelihood_units
    from ppl_vae.runs import load_run

    run = load_run(path)
    splits = run.splits()
    units = likelihood_units(run.spec.likelihood.name, run.spec.data_dim,
                             dequantized=splits.dequantized, max_value=splits.max_value)
    table, notes = evaluate_split(run.vae, splits.test, run=path.name, units=units,
                                  config=EvaluationConfig(seed=seed))
    print("\n".join(notes))
    return table


if __name__ == "__main__":
    main(parse_args())
