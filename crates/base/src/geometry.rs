//! Plane geometry shared by config validation and the rule engine: polygons (zones),
//! polylines (counting lines), and the checks that keep them meaningful.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }
}

/// A simple polygon (no self-intersections), at least three corners, non-zero area.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<Point>,
}

/// A line of at least two points with no zero-length segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Polyline {
    points: Vec<Point>,
}

/// Why a shape was refused; the message says what would be valid.
#[derive(Debug, Clone, PartialEq)]
pub enum ShapeError {
    TooFewPoints { got: usize, need: usize },
    RepeatedPoint { index: usize },
    ZeroArea,
    SelfIntersecting { a: usize, b: usize },
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooFewPoints { got, need } => {
                write!(f, "has {got} point(s); at least {need} are needed")
            }
            Self::RepeatedPoint { index } => {
                write!(f, "point {index} repeats the point before it; remove the duplicate")
            }
            Self::ZeroArea => {
                write!(f, "is degenerate (zero area: all points on one line); give the corners of a real area")
            }
            Self::SelfIntersecting { a, b } => write!(
                f,
                "crosses itself (edge {a}-{} meets edge {b}-{}); list the corners in order around the area",
                a + 1,
                b + 1
            ),
        }
    }
}

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

fn on_segment(p: Point, a: Point, b: Point) -> bool {
    p.x >= a.x.min(b.x) && p.x <= a.x.max(b.x) && p.y >= a.y.min(b.y) && p.y <= a.y.max(b.y)
}

/// Whether segments ab and cd share any point (touching counts).
pub fn segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool {
    let (d1, d2) = (cross(c, d, a), cross(c, d, b));
    let (d3, d4) = (cross(a, b, c), cross(a, b, d));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0)) && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0)) {
        return true;
    }
    (d1 == 0.0 && on_segment(a, c, d))
        || (d2 == 0.0 && on_segment(b, c, d))
        || (d3 == 0.0 && on_segment(c, a, b))
        || (d4 == 0.0 && on_segment(d, a, b))
}

impl Polygon {
    /// Validates and builds a zone. A last point equal to the first (a closed ring as some
    /// tools export it) is accepted and dropped.
    pub fn new(mut points: Vec<Point>) -> Result<Self, ShapeError> {
        if points.len() > 3 && points.first() == points.last() {
            points.pop();
        }
        if points.len() < 3 {
            return Err(ShapeError::TooFewPoints { got: points.len(), need: 3 });
        }
        if let Some(i) = (1..points.len()).find(|&i| points[i] == points[i - 1]) {
            return Err(ShapeError::RepeatedPoint { index: i });
        }
        let n = points.len();
        for i in 0..n {
            for j in i + 1..n {
                // Adjacent edges share a corner by construction.
                if j == i + 1 || (i == 0 && j == n - 1) {
                    continue;
                }
                if segments_intersect(points[i], points[(i + 1) % n], points[j], points[(j + 1) % n]) {
                    return Err(ShapeError::SelfIntersecting { a: i, b: j });
                }
            }
        }
        let poly = Self { points };
        // Relative to the bounding box, so pixel and normalised zones are judged alike.
        let (w, h) = poly.extent();
        if poly.area() <= 1e-9 * (w * h).max(f64::MIN_POSITIVE) || w == 0.0 || h == 0.0 {
            return Err(ShapeError::ZeroArea);
        }
        Ok(poly)
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }

    pub fn area(&self) -> f64 {
        let n = self.points.len();
        let twice: f64 = (0..n)
            .map(|i| {
                let (a, b) = (self.points[i], self.points[(i + 1) % n]);
                a.x * b.y - b.x * a.y
            })
            .sum();
        twice.abs() / 2.0
    }

    fn extent(&self) -> (f64, f64) {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in &self.points {
            x0 = x0.min(p.x);
            y0 = y0.min(p.y);
            x1 = x1.max(p.x);
            y1 = y1.max(p.y);
        }
        (x1 - x0, y1 - y0)
    }

    /// Even-odd rule; points on an edge may fall either way.
    pub fn contains(&self, p: Point) -> bool {
        let n = self.points.len();
        let mut inside = false;
        let mut j = n - 1;
        for i in 0..n {
            let (a, b) = (self.points[i], self.points[j]);
            if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

impl Polyline {
    pub fn new(points: Vec<Point>) -> Result<Self, ShapeError> {
        if points.len() < 2 {
            return Err(ShapeError::TooFewPoints { got: points.len(), need: 2 });
        }
        if let Some(i) = (1..points.len()).find(|&i| points[i] == points[i - 1]) {
            return Err(ShapeError::RepeatedPoint { index: i });
        }
        Ok(Self { points })
    }

    pub fn points(&self) -> &[Point] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter().map(|&(x, y)| Point::new(x, y)).collect()
    }

    #[test]
    fn accepts_a_square_and_a_closed_ring() {
        let sq = Polygon::new(pts(&[(0., 0.), (1., 0.), (1., 1.), (0., 1.)])).unwrap();
        assert_eq!(sq.area(), 1.0);
        assert!(sq.contains(Point::new(0.5, 0.5)));
        assert!(!sq.contains(Point::new(1.5, 0.5)));
        let ring = Polygon::new(pts(&[(0., 0.), (4., 0.), (0., 3.), (0., 0.)])).unwrap();
        assert_eq!(ring.points().len(), 3);
        assert_eq!(ring.area(), 6.0);
    }

    #[test]
    fn refuses_bad_polygons() {
        assert_eq!(Polygon::new(pts(&[(0., 0.), (1., 0.)])), Err(ShapeError::TooFewPoints { got: 2, need: 3 }));
        assert_eq!(Polygon::new(pts(&[(0., 0.), (1., 1.), (2., 2.)])), Err(ShapeError::ZeroArea));
        // A bow tie: edges 0-1 and 2-3 cross.
        assert_eq!(
            Polygon::new(pts(&[(0., 0.), (1., 1.), (1., 0.), (0., 1.)])),
            Err(ShapeError::SelfIntersecting { a: 0, b: 2 })
        );
        assert_eq!(
            Polygon::new(pts(&[(0., 0.), (0., 0.), (1., 0.), (0., 1.)])),
            Err(ShapeError::RepeatedPoint { index: 1 })
        );
    }

    #[test]
    fn polylines_need_two_distinct_points() {
        assert!(Polyline::new(pts(&[(0., 0.), (1., 0.)])).is_ok());
        assert_eq!(Polyline::new(pts(&[(0., 0.)])), Err(ShapeError::TooFewPoints { got: 1, need: 2 }));
        assert_eq!(Polyline::new(pts(&[(0., 0.), (0., 0.)])), Err(ShapeError::RepeatedPoint { index: 1 }));
    }

    #[test]
    fn segment_intersection_counts_touching() {
        let p = |x, y| Point::new(x, y);
        assert!(segments_intersect(p(0., 0.), p(2., 2.), p(0., 2.), p(2., 0.)));
        assert!(segments_intersect(p(0., 0.), p(2., 0.), p(1., 0.), p(1., 5.)));
        assert!(!segments_intersect(p(0., 0.), p(1., 0.), p(0., 1.), p(1., 1.)));
    }
}
