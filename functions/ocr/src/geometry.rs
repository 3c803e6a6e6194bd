//! The plane geometry text boxes need: convex hulls, minimum-area rectangles (rotating calipers),
//! corner order, a point-in-quadrilateral test, and growing a rectangle by a distance.

/// A point, in pixels.
pub type Point = [f32; 2];

/// The convex hull of `points`, counter-clockwise (Andrew's monotone chain).
pub fn convex_hull(mut points: Vec<Point>) -> Vec<Point> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: Point, a: Point, b: Point| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut hull: Vec<Point> = Vec::with_capacity(points.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &Point>> = if pass == 0 { Box::new(points.iter()) } else { Box::new(points.iter().rev()) };
        for &p in ordered {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The smallest rectangle around `hull`, as four corners (rotating calipers: one side of the
/// best rectangle lies along a hull edge).
pub fn min_area_rect(hull: &[Point]) -> [Point; 4] {
    if hull.len() == 1 {
        return [hull[0]; 4];
    }
    let mut best: Option<(f32, [Point; 4])> = None;
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        let length = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
        if length == 0.0 {
            continue;
        }
        let u = [(b[0] - a[0]) / length, (b[1] - a[1]) / length];
        let v = [-u[1], u[0]];
        let (mut u_min, mut u_max, mut v_min, mut v_max) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in hull {
            let (pu, pv) = (p[0] * u[0] + p[1] * u[1], p[0] * v[0] + p[1] * v[1]);
            u_min = u_min.min(pu);
            u_max = u_max.max(pu);
            v_min = v_min.min(pv);
            v_max = v_max.max(pv);
        }
        let area = (u_max - u_min) * (v_max - v_min);
        if best.as_ref().is_none_or(|(a, _)| area < *a) {
            let corner = |pu: f32, pv: f32| [pu * u[0] + pv * v[0], pu * u[1] + pv * v[1]];
            best = Some((area, [corner(u_min, v_min), corner(u_max, v_min), corner(u_max, v_max), corner(u_min, v_max)]));
        }
    }
    best.map_or([hull[0]; 4], |(_, corners)| corners)
}

/// PaddleOCR's corner order for a box: top-left, top-right, bottom-right, bottom-left, taking
/// the two leftmost points as the left side; and the box's shorter side.
pub fn mini_box(corners: [Point; 4]) -> ([Point; 4], f32) {
    let mut sorted = corners;
    sorted.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (top_left, bottom_left) = if sorted[1][1] > sorted[0][1] { (sorted[0], sorted[1]) } else { (sorted[1], sorted[0]) };
    let (top_right, bottom_right) = if sorted[3][1] > sorted[2][1] { (sorted[2], sorted[3]) } else { (sorted[3], sorted[2]) };
    let side = distance(corners[0], corners[1]).min(distance(corners[1], corners[2]));
    ([top_left, top_right, bottom_right, bottom_left], side)
}

/// The distance between two points.
pub fn distance(a: Point, b: Point) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The area of a polygon (shoelace), and its perimeter.
pub fn area_and_perimeter(polygon: &[Point]) -> (f32, f32) {
    let mut area = 0.0;
    let mut perimeter = 0.0;
    for i in 0..polygon.len() {
        let (a, b) = (polygon[i], polygon[(i + 1) % polygon.len()]);
        area += a[0] * b[1] - b[0] * a[1];
        perimeter += distance(a, b);
    }
    (area.abs() / 2.0, perimeter)
}

/// A rectangle grown by `by` on every side (what offsetting it by `by` with round joins and
/// taking the minimum-area rectangle again gives).
pub fn grow(rect: [Point; 4], by: f32) -> [Point; 4] {
    let center = [rect.iter().map(|p| p[0]).sum::<f32>() / 4.0, rect.iter().map(|p| p[1]).sum::<f32>() / 4.0];
    let unit = |a: Point, b: Point| {
        let d = distance(a, b).max(f32::EPSILON);
        [(b[0] - a[0]) / d, (b[1] - a[1]) / d]
    };
    let along = unit(rect[0], rect[1]);
    let across = unit(rect[1], rect[2]);
    rect.map(|p| {
        let (du, dv) = (
            (p[0] - center[0]) * along[0] + (p[1] - center[1]) * along[1],
            (p[0] - center[0]) * across[0] + (p[1] - center[1]) * across[1],
        );
        let (du, dv) = (du + by * du.signum(), dv + by * dv.signum());
        [center[0] + du * along[0] + dv * across[0], center[1] + du * along[1] + dv * across[1]]
    })
}

/// Whether `p` lies inside (or on) the convex quadrilateral `quad`.
pub fn inside(quad: &[Point; 4], p: Point) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let (a, b) = (quad[i], quad[(i + 1) % 4]);
        let cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        if cross != 0.0 {
            if sign != 0.0 && cross.signum() != sign {
                return false;
            }
            sign = cross.signum();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_axis_aligned_block_is_its_own_rectangle() {
        let points: Vec<Point> = (0..10).flat_map(|x| (0..4).map(move |y| [x as f32, y as f32])).collect();
        let hull = convex_hull(points);
        assert_eq!(hull.len(), 4);
        let (corners, side) = mini_box(min_area_rect(&hull));
        assert_eq!(side, 3.0);
        let rounded = corners.map(|p| [p[0].round(), p[1].round()]);
        assert_eq!(rounded, [[0.0, 0.0], [9.0, 0.0], [9.0, 3.0], [0.0, 3.0]]);
    }

    #[test]
    fn a_rotated_block_gives_a_rotated_rectangle() {
        let angle = 0.3f32;
        let points: Vec<Point> = (0..40)
            .flat_map(|u| (0..8).map(move |v| (u as f32, v as f32)))
            .map(|(u, v)| [u * angle.cos() - v * angle.sin() + 50.0, u * angle.sin() + v * angle.cos() + 20.0])
            .collect();
        let rect = min_area_rect(&convex_hull(points));
        let (w, h) = (distance(rect[0], rect[1]), distance(rect[1], rect[2]));
        let (long, short) = (w.max(h), w.min(h));
        assert!((long - 39.0).abs() < 0.01 && (short - 7.0).abs() < 0.01, "{long} {short}");
    }

    #[test]
    fn growing_and_inside() {
        let rect = [[0.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 4.0]];
        let grown = grow(rect, 2.0);
        assert_eq!(grown, [[-2.0, -2.0], [12.0, -2.0], [12.0, 6.0], [-2.0, 6.0]]);
        assert!(inside(&rect, [5.0, 2.0]) && inside(&rect, [0.0, 0.0]) && !inside(&rect, [11.0, 2.0]));
        assert_eq!(area_and_perimeter(&rect), (40.0, 28.0));
    }
}
