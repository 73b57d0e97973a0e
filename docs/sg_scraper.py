"""A sphinx-gallery image scraper for the figures learnrules' plot functions return."""


def figure_scraper(block, block_vars, gallery_conf):
    """Show the figures a tutorial block left in its globals.

    learnrules' plot functions return pyplot-free ``Figure`` objects, which the matplotlib scraper cannot see;
    pyplot's own figures (ArviZ's) are left to it.
    """
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    paths = []
    for value in list(block_vars["example_globals"].values()):
        if isinstance(value, Figure) and value.canvas.manager is None and not getattr(value, "_shown", False):
            path = next(block_vars["image_path_iterator"])
            value.savefig(path, dpi=90)
            value._shown = True
            paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
