"""fdf_build: build, download, search and curate FDF-style face datasets from YFCC100M Flickr photos."""

__version__ = "0.1.0"
