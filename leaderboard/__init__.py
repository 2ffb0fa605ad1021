"""The static HTML leaderboard and the paired model comparison.

    leaderboard.build.build(results_dir, out_dir) -> out_dir     the site (python -m benchmark leaderboard)
    leaderboard.compare.compare_cli(args)                         python -m benchmark compare --a A --b B
    leaderboard.plots                                             inline SVG plots and aggregate curves

The site is built in one direction: records (result files) -> rules (honesty) -> figures -> views
(page models) -> render (Jinja2, atomic write) -> build.

Nothing is imported here, so `import leaderboard` stays cheap; import the submodules.
"""
