"""The static HTML leaderboard and the paired model comparison.

    leaderboard.build.build(results_dir, out_dir) -> out_dir     the site (python -m benchmark leaderboard)
    leaderboard.compare.compare_cli(args)                         python -m benchmark compare --a A --b B
    leaderboard.plots                                             inline SVG plots and aggregate curves

Nothing is imported here, so `import leaderboard` stays cheap; import the submodules.
"""
