"""Where each corpus comes from and how to put it where `data=<corpus>` looks: one text per corpus.

Parsers quote the short `hint` in their errors; `python -m ser_lightning.data.download <corpus>`
prints the full `steps` for corpora whose licence needs a manual step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusOrigin:
    """Where one corpus comes from and how a user puts it where its data config looks.

    Attributes:
        name: the corpus key (`data=<name>`).
        title: the corpus's full name.
        home: the page it is downloaded from.
        licence: its licence, as its authors state it.
        default_folder: the folder under `paths.data_dir` where `conf/data/<name>.yaml` looks.
        hint: one sentence for error messages.
        steps: what a user does to get it, in order.
    """

    name: str
    title: str
    home: str
    licence: str
    default_folder: str
    hint: str
    steps: tuple[str, ...]


SOURCES: dict[str, CorpusOrigin] = {
    "ravdess": CorpusOrigin(
        name="ravdess",
        title="RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song)",
        home="https://zenodo.org/records/1188976",
        licence="CC BY-NC-SA 4.0",
        default_folder="ravdess",
        hint=(
            "Get it with `python -m ser_lightning.data.download ravdess` (Zenodo record 1188976, "
            "Audio_Speech_Actors_01-24.zip) or pass its folder as data.root=PATH; "
            "data=demo works offline."
        ),
        steps=("python -m ser_lightning.data.download ravdess",),
    ),
    "crema_d": CorpusOrigin(
        name="crema_d",
        title="CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset)",
        home="https://github.com/CheyneyComputerScience/CREMA-D",
        licence="Open Database License (ODbL) v1.0",
        default_folder="crema_d",
        hint=(
            "CREMA-D's audio is the AudioWAV folder of https://github.com/CheyneyComputerScience/CREMA-D "
            "(stored with Git LFS); see `python -m ser_lightning.data.download crema_d`."
        ),
        steps=(
            "Install Git LFS (https://git-lfs.com) and run `git lfs install` once.",
            "GIT_LFS_SKIP_SMUDGE=1 git clone https://github.com/CheyneyComputerScience/CREMA-D.git"
            "   # skips the large video files",
            "cd CREMA-D && git lfs pull --include 'AudioWAV/*'",
            "Move or link the AudioWAV folder to data/crema_d (or pass data.root=.../CREMA-D/AudioWAV).",
            "python -m ser_lightning.train data=crema_d",
        ),
    ),
    "tess": CorpusOrigin(
        name="tess",
        title="TESS (Toronto Emotional Speech Set)",
        home="https://doi.org/10.5683/SP2/E8H2MF",
        licence="non-commercial; see the dataset page",
        default_folder="tess",
        hint=(
            "TESS is published by the University of Toronto at https://doi.org/10.5683/SP2/E8H2MF; "
            "see `python -m ser_lightning.data.download tess`."
        ),
        steps=(
            "Open https://doi.org/10.5683/SP2/E8H2MF (Scholars Portal Dataverse, University of Toronto) "
            "and download the dataset's files, accepting the terms shown there.",
            "Unpack them into data/tess so that it holds the per-emotion folders, e.g. "
            "data/tess/OAF_angry/OAF_back_angry.wav (any nesting depth works).",
            "python -m ser_lightning.train data=tess   # two speakers: split=random by default (README, Protocols)",
        ),
    ),
    "savee": CorpusOrigin(
        name="savee",
        title="SAVEE (Surrey Audio-Visual Expressed Emotion)",
        home="http://kahlan.eps.surrey.ac.uk/savee/",
        licence="free for research use; registration required",
        default_folder="savee",
        hint=(
            "SAVEE needs a registration at http://kahlan.eps.surrey.ac.uk/savee/; see "
            "`python -m ser_lightning.data.download savee`."
        ),
        steps=(
            "Register through the form linked from http://kahlan.eps.surrey.ac.uk/savee/; the reply "
            "gives the download credentials.",
            "Download the audio-only archive from the site's download page.",
            "Unpack it into data/savee: either AudioData/DC/a01.wav (one folder per speaker) or a flat "
            "folder of DC_a01.wav names works.",
            "python -m ser_lightning.train data=savee",
        ),
    ),
    "ser_en": CorpusOrigin(
        name="ser_en",
        title="Speech Emotion Recognition (en): CREMA-D, RAVDESS, SAVEE and TESS bundled",
        home="https://www.kaggle.com/datasets/dmitrybabko/speech-emotion-recognition-en",
        licence="the licences of the four corpora it bundles",
        default_folder="ser_en",
        hint=(
            "The combined set is the Kaggle dataset dmitrybabko/speech-emotion-recognition-en with "
            "folders Crema/, Ravdess/, Savee/ and Tess/; see `python -m ser_lightning.data.download ser_en`."
        ),
        steps=(
            "Sign in to Kaggle and accept the dataset's terms at "
            "https://www.kaggle.com/datasets/dmitrybabko/speech-emotion-recognition-en.",
            "Download it from that page, or with the Kaggle CLI and an API token: "
            "`kaggle datasets download -d dmitrybabko/speech-emotion-recognition-en`.",
            "Unzip it into data/ser_en so that data/ser_en holds Crema/, Ravdess/, Savee/ and Tess/.",
            "python -m ser_lightning.train data=ser_en",
        ),
    ),
    "emodb": CorpusOrigin(
        name="emodb",
        title="EmoDB (Berlin Database of Emotional Speech)",
        home="http://emodb.bilderbar.info/",
        licence="free for research use, as stated on the download page",
        default_folder="emodb",
        hint=(
            "EmoDB is a free download from http://emodb.bilderbar.info/ (download.zip, whose wav/ folder "
            "holds names like 03a01Fa.wav); see `python -m ser_lightning.data.download emodb`."
        ),
        steps=(
            "Open http://emodb.bilderbar.info/ and download the database (the download page's zip).",
            "Unpack it into data/emodb so that it holds wav/03a01Fa.wav and the other 534 files "
            "(any nesting depth works; the other folders of the archive are not read).",
            "python -m ser_lightning.train data=emodb   # leave-one-speaker-out: data.fold=0..9",
        ),
    ),
    "msp_podcast": CorpusOrigin(
        name="msp_podcast",
        title="MSP-Podcast (emotional speech from podcast recordings, MSP Lab, UT Dallas)",
        home="https://ecs.utdallas.edu/research/researchgroups/msp-lab/MSP-Podcast.html",
        licence="academic licence agreement with The University of Texas at Dallas (no redistribution)",
        default_folder="msp_podcast",
        hint=(
            "MSP-Podcast is released by the MSP Lab (UT Dallas) under an academic licence agreement: "
            "https://ecs.utdallas.edu/research/researchgroups/msp-lab/MSP-Podcast.html; see "
            "`python -m ser_lightning.data.download msp_podcast`."
        ),
        steps=(
            "Open https://ecs.utdallas.edu/research/researchgroups/msp-lab/MSP-Podcast.html and request the "
            "corpus: sign the academic licence agreement (by a faculty member or the institution) and send "
            "it to the MSP Lab as the page says; the reply gives the download link.",
            "Download the release and unpack it into data/msp_podcast so that it holds Audios/*.wav "
            "(unpack Audios.tar.gz there) and Labels/labels_consensus.csv.",
            "python -m ser_lightning.train data=msp_podcast   # the official partitions: "
            "Train, Development, and Test1 (data.test_partition=Test2 for the other test set)",
        ),
    ),
    "iemocap": CorpusOrigin(
        name="iemocap",
        title="IEMOCAP (Interactive Emotional Dyadic Motion Capture database)",
        home="https://sail.usc.edu/iemocap/",
        licence="research use under the IEMOCAP release form (a signed request is required)",
        default_folder="iemocap",
        hint=(
            "IEMOCAP is released by USC SAIL on request through the form at https://sail.usc.edu/iemocap/; "
            "see `python -m ser_lightning.data.download iemocap`."
        ),
        steps=(
            "Request the corpus through the release form at https://sail.usc.edu/iemocap/ "
            "(https://sail.usc.edu/iemocap/iemocap_release.htm); the reply gives the download link.",
            "Unpack IEMOCAP_full_release.tar.gz into data/iemocap, so that it holds "
            "IEMOCAP_full_release/Session1 ... Session5 (or pass data.root=.../IEMOCAP_full_release).",
            "python -m ser_lightning.train data=iemocap data.fold=0   # leave-one-session-out: fold K tests session K+1",
        ),
    ),
    "emobox": CorpusOrigin(
        name="emobox",
        title="EmoBox (multilingual multi-corpus SER benchmark): its published folds of each corpus",
        home="https://github.com/emo-box/EmoBox",
        licence="EmoBox's metadata: see its repository; each corpus keeps its own licence",
        default_folder="EmoBox",
        hint=(
            "data=emobox reads EmoBox's lists (git clone https://github.com/emo-box/EmoBox; its data/ folder is "
            "data.emobox.meta_dir) and the corpus's audio under data.root, the folder their wav paths are "
            "relative to; see `python -m ser_lightning.data.download emobox`."
        ),
        steps=(
            "git clone https://github.com/emo-box/EmoBox data/EmoBox   # data/EmoBox/data/<name>/fold_<k>/*.jsonl",
            "Get the corpus's audio as EmoBox's README says (its own licence) so that the lists' wav paths, "
            "e.g. downloads/emodb/wav/03a01Fa.wav, exist under data/EmoBox (or pass data.root=FOLDER).",
            "python -m ser_lightning.train data=emobox data.emobox.dataset=emodb data.fold=0   # EmoBox's fold 1",
        ),
    ),
}
