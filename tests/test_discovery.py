"""Split-file parsing in the official UCF-101 and HMDB-51 formats, generic folders, stable ids."""

import os
from pathlib import Path

import pytest

from pipeline.data import discovery as d


def touch(root: Path, rel: str, data: bytes = b"x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def ucf(tmp_path):
    """A UCF-101 tree with split files copied in the official format (CRLF line ends included)."""
    root = tmp_path / "UCF-101"
    for rel in ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                "YoYo/v_YoYo_g01_c02.avi", "YoYo/v_YoYo_g25_c05.avi", "YoYo/v_YoYo_g25_c06.avi"]:
        touch(root, rel)
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 YoYo\r\n")
    (lists / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nYoYo/v_YoYo_g25_c05.avi 2\r\n")
    (lists / "testlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nYoYo/v_YoYo_g01_c02.avi\r\n")
    return root, lists


def test_ucf101_layout_and_official_split_files(ucf):
    root, lists = ucf
    videos = {v.relpath: v for v in d.discover(root, "ucf101", split=1, splits_dir=lists)}
    assert set(videos) == {"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                           "YoYo/v_YoYo_g01_c02.avi", "YoYo/v_YoYo_g25_c05.avi", "YoYo/v_YoYo_g25_c06.avi"}
    assert videos["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"].split == "train"
    assert videos["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"].split == "test"
    assert videos["YoYo/v_YoYo_g25_c06.avi"].split == "unused"   # in neither list
    assert videos["YoYo/v_YoYo_g01_c02.avi"].label == 1          # classInd is 1-based, labels 0-based
    assert videos["YoYo/v_YoYo_g01_c02.avi"].video_id == "YoYo/v_YoYo_g01_c02"
    assert d.class_names(list(videos.values())) == ["ApplyEyeMakeup", "YoYo"]


def test_ucf_class_index_errors_name_the_file(tmp_path):
    bad = tmp_path / "classInd.txt"
    bad.write_text("1 A\n3 C\n")
    with pytest.raises(ValueError, match="classInd.txt"):
        d.parse_ucf_class_index(bad)
    bad.write_text("A 1\n")
    with pytest.raises(ValueError, match=r"classInd.txt:1"):
        d.parse_ucf_class_index(bad)


def test_hmdb51_layout_and_split_codes(tmp_path):
    root = tmp_path / "hmdb51"
    for rel in ["brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
                "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi",
                "brush_hair/Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi",
                "cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi"]:
        touch(root, rel)
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \n"
        "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n")
    (splits / "cartwheel_test_split1.txt").write_text("(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 2 \n")
    videos = {Path(v.relpath).name: v for v in d.discover(root, "hmdb51", split=1, splits_dir=splits)}
    assert videos["April_09_brush_hair_u_nm_np1_ba_goo_0.avi"].split == "train"
    assert videos["April_09_brush_hair_u_nm_np1_ba_goo_1.avi"].split == "test"
    assert videos["Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi"].split == "unused"
    odd = videos["(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi"]
    assert odd.split == "test" and odd.label == 1
    assert all(c.isalnum() or c in "._-/" for c in odd.video_id)   # safe as a wildcard and a file name


def test_hmdb_split_file_error_names_line(tmp_path):
    bad = tmp_path / "x_test_split1.txt"
    bad.write_text("a.avi 1\nb.avi 7\n")
    with pytest.raises(ValueError, match=r"x_test_split1.txt:2"):
        d.parse_hmdb_split(bad)


def test_generic_folder_stable_hash_split(tmp_path):
    root = tmp_path / "clips"
    for i in range(40):
        touch(root, f"{'jump' if i % 2 else 'wave'}/clip {i}.mp4")
    touch(root, "wave/readme.txt")           # not a video extension: ignored
    first = d.discover(root, "folder", test_fraction=0.25)
    assert len(first) == 40 and {v.class_name for v in first} == {"jump", "wave"}
    n_test = sum(v.split == "test" for v in first)
    assert 3 <= n_test <= 18
    # adding a video changes nobody else's id or split
    touch(root, "jump/clip new.mp4")
    second = {v.video_id: v for v in d.discover(root, "folder", test_fraction=0.25)}
    for v in first:
        assert second[v.video_id].split == v.split and second[v.video_id].label == v.label


def test_ids_are_stable_safe_and_unique():
    assert d.video_id("YoYo/v_YoYo_g01_c01.avi") == "YoYo/v_YoYo_g01_c01"
    a, b = d.video_id("x/clip 1.avi"), d.video_id("x/clip_1.avi")
    assert a != b and " " not in a
    assert d.video_id("Ünïcode/vidéo.mp4") == d.video_id("Ünïcode/vidéo.mp4")
    assert d.stable_hash("abc") == d.stable_hash("abc")   # not Python's salted hash()


def test_manifest_round_trip(ucf, tmp_path):
    root, lists = ucf
    videos = d.discover(root, "ucf101", splits_dir=lists)
    d.write_manifest(videos, tmp_path / "m.tsv")
    assert d.read_manifest(tmp_path / "m.tsv") == videos


def test_missing_root_and_bad_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        d.discover(tmp_path / "nope")
    with pytest.raises(ValueError, match="layout"):
        d.discover(tmp_path, "kinetics")


def test_dangling_link_is_listed_for_the_frames_stage_to_reject(tmp_path):
    root = tmp_path / "r"
    touch(root, "a/ok.avi")
    os.symlink(tmp_path / "missing.avi", root / "a" / "gone.avi")
    videos = {v.relpath: v for v in d.discover(root, "folder")}
    assert videos["a/gone.avi"].size == -1


def test_an_empty_or_classless_folder_fails_early_saying_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(d.DiscoveryError, match="no video files under .*empty.*looked for"):
        d.discover(tmp_path / "empty", "folder")
    touch(tmp_path / "flat", "clip.mp4")          # videos, but no class folder around them
    with pytest.raises(d.DiscoveryError, match="none in a class"):
        d.discover(tmp_path / "flat", "folder")


def test_group_pattern_keeps_one_recordings_clips_in_one_split(tmp_path):
    root = tmp_path / "clips"
    for g in range(30):
        for c in range(3):
            touch(root, f"jump/v_jump_g{g:02d}_c{c:02d}.avi")
    grouped = d.discover(root, "folder", test_fraction=0.3, group_pattern=r"_g(\d+)_")
    splits: dict[str, set[str]] = {}
    for v in grouped:
        splits.setdefault(v.relpath.split("_g")[1][:2], set()).add(v.split)
    assert all(len(s) == 1 for s in splits.values()) and {"train", "test"} <= {v.split for v in grouped}
    ungrouped = d.discover(root, "folder", test_fraction=0.3)
    assert any(len({v.split for v in ungrouped if f"_g{g:02d}_" in v.relpath}) == 2 for g in range(30))
