import pytest

from samplers.prompt_schedule import schedule_prompts


def test_entries_without_range_apply_everywhere():
    prompts, of_frame = schedule_prompts([None], 4)
    assert prompts == [[0]] and of_frame == [0, 0, 0, 0]


def test_ranges_split_the_video_and_global_entries_join_every_segment():
    prompts, of_frame = schedule_prompts([(0, 3), (3, None), None], 6)
    assert prompts == [[0, 2], [1, 2]]
    assert of_frame == [0, 0, 0, 1, 1, 1]


def test_uncovered_frames_are_an_error_that_names_the_frame():
    with pytest.raises(ValueError, match="Output frame 2 is not covered"):
        schedule_prompts([(0, 2), (3, None)], 5)
