"""fdf_build: build, download, search and curate FDF-style face datasets from YFCC100M Flickr photos."""

__version__ = "0.1.0"


def __getattr__(name):
    # `from fdf_build import FDF256Dataset`, loaded on first use: importing the package stays free of numpy and cv2
    if name == "FDF256Dataset":
        from .dataset.loader import FDF256Dataset

        return FDF256Dataset
    raise AttributeError(f"module 'fdf_build' has no attribute {name!r}")
