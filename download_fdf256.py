"""Download a published FDF256 copy into data/fdf256/{train,val}/: verified, resumable, safely extracted.

    python download_fdf256.py                                  # the original host (now answering 502)
    python download_fdf256.py --base-url https://mirror.example/fdf256
    python download_fdf256.py data/fdf256 --mirror URL1 --mirror URL2 --licenses cc-by-2,cc-by-sa-2
    python download_fdf256.py --verify-only

Re-running downloads nothing that is already verified and resumes partial files.
"""

from fdf_build.cli.download import download_main

if __name__ == "__main__":
    download_main()
