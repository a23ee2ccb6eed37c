"""Find every face of a Flickr user (or photo) in an FDF dataset.

    python search_username.py data/fdf256/train/fdf_metainfo.json --user_nsid=12345678@N00
    python search_username.py data/fdf256 --photo-url https://www.flickr.com/photos/someone/2000000001/ --json

Exit status: 0 when something was found, 1 when not, 2 on bad input.
"""

from fdf_build.cli.search import search_main

if __name__ == "__main__":
    search_main()
